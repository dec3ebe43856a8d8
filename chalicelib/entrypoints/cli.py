"""`python -m chalicelib status SAGA_ID` / `history SAGA_ID`: a saga as readable tables in a terminal; `list
[--status ...]` the sagas a search finds (the filters of `GET /sagas`), and `stats [--since ...]` their counts.
`resolve SAGA_ID --note TEXT` closes a FAILED saga fixed by hand; `cancel SAGA_ID` cancels a RUNNING one (its
compensations undo what was done); each prints the saga as `status` does. `retry [--status ...] --dry-run` counts the
sagas a bulk retry of that filter would retry, and without --dry-run records it for the worker (`make run`'s, or the
deployed BulkRetryFunction); `operation OPERATION_ID` shows how far it has got.

Reads and writes the data of DATABASE_URL/REDIS_URL, or the embedded default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from chalicelib.domain.contracts import FreeText
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.presentation import saga_views
from chalicelib.presentation.api_models import SagaStatsQuery
from chalicelib.service import bulk_retry, operator_actions, saga_search, sagas


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(header) for header in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def status(saga_id: str) -> str:
    view = sagas.read_saga(saga_id)
    if view is None:
        raise LookupError(f"no saga {saga_id}")
    summary = [
        f"saga     {view['saga_id']} ({view['type']})",
        f"status   {view['status']}",
        f"created  {view['created_at']}",
        f"updated  {view['updated_at']}",
        f"input    {view['input']}",
        f"result   {view['result']}",
        "",
    ]
    steps = [
        (step["name"], step["action"], step["status"], step["attempts"], *_error(step["error"]))
        for step in view["steps"]
    ]
    return "\n".join(summary) + table(("step", "action", "status", "attempts", "error", "message"), steps)


def _error(error: dict[str, Any] | None) -> tuple[Any, Any]:
    return (error["type"], error["message"]) if error else (None, None)


def history(saga_id: str) -> str:
    events = sagas.read_history(saga_id)
    if events is None:
        raise LookupError(f"no saga {saga_id}")
    rows = [
        (e["time"], e["step"], e["action"], e["status"], e["attempt"], e["error_type"], saga_views.event_message(e))
        for e in events
    ]
    return table(("time", "step", "action", "status", "attempt", "error", "message"), rows)


def resolve(saga_id: str, note: str) -> str:
    try:
        checked = TypeAdapter(FreeText).validate_python(note)
    except ValidationError as error:
        raise ValueError(f"--note: {error.errors()[0]['msg']}") from None
    return _acted_on(saga_id, operator_actions.resolve(saga_id, checked, sagas.LOCAL_CALLER))


def cancel(saga_id: str) -> str:
    return _acted_on(saga_id, operator_actions.cancel(saga_id, sagas.LOCAL_CALLER))


def _acted_on(saga_id: str, saga: object | None) -> str:
    if saga is None:
        raise LookupError(f"no saga {saga_id}")
    return status(saga_id)


def list_sagas(saga_filter: SagaFilter, limit: int, cursor: str | None) -> str:
    items, next_cursor = saga_search.search(saga_filter, limit, cursor)
    return _sagas(items) + (f"\nnext page: --cursor {next_cursor}" if next_cursor else "")


def _sagas(items: Sequence[dict[str, Any]]) -> str:
    rows = [
        (i["saga_id"], i["type"], i["status"], i["step"], i["customer_id"], i["order_id"], i["sku"], i["created_at"])
        for i in items
    ]
    return table(("saga", "type", "status", "step", "customer", "order", "sku", "created"), rows)


def retry(saga_filter: SagaFilter, dry_run: bool) -> str:
    """A bulk retry of the filter's retryable sagas: counted and shown (`dry_run`), or recorded for the worker."""
    if dry_run:
        found = bulk_retry.preview(saga_filter)
        more = f", the newest {len(found.sagas)} shown" if found.matched > len(found.sagas) else ""
        return f"{found.matched} saga(s) to retry (dry run: nothing changed{more})\n" + _sagas(found.sagas)
    recorded = bulk_retry.submit(saga_filter, sagas.LOCAL_CALLER)
    return operation(recorded.id) + (
        "\n\nthe worker retries them (make run's, or the deployed BulkRetryFunction); follow it with "
        f"`python -m chalicelib operation {recorded.id}`"
    )


def operation(operation_id: str) -> str:
    found = bulk_retry.read(operation_id)
    if found is None:
        raise LookupError(f"no operation {operation_id}")
    keys = ("operation_id", "kind", "status", "filter", "matched", "started", "done", "failed", "created_at")
    shown = {**found, "filter": _as_options(found["filter"])}
    return table(("operation", ""), [(key.removesuffix("_id"), shown[key]) for key in keys])


def _as_options(given: dict[str, Any]) -> str:
    """A filter as the options that give it, in the order `list --help` shows them."""
    values = {key: ",".join(value) if isinstance(value, list) else value for key, value in given.items()}
    return " ".join(f"{_option(key)} {values[key]}" for key in SagaFilter.model_fields if key in values) or "(none)"


def stats(since: str | None) -> str:
    counts = saga_search.stats(SagaStatsQuery.model_validate({"since": since}).since if since else None)
    age = counts["oldest_running_age_seconds"]
    rows = [
        *counts["by_status"].items(),
        *counts["by_type"].items(),
        ("total", counts["total"]),
        ("stuck", counts["stuck"]),
        ("oldest RUNNING, s", "-" if age is None else f"{age:.0f}"),
    ]
    return table(("sagas" + (f" since {counts['since']}" if since else ""), "count"), rows)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("status", "history", "cancel"):
        commands.add_parser(
            name, help=f"a saga's {name}" if name != "cancel" else "cancel a RUNNING saga"
        ).add_argument("saga_id")
    resolving = commands.add_parser("resolve", help="close a FAILED saga fixed by hand")
    resolving.add_argument("saga_id")
    resolving.add_argument("--note", required=True, help="what was fixed by hand, for the saga's history")
    listing = commands.add_parser("list", help="the sagas that match every filter given, newest first")
    retrying = commands.add_parser("retry", help="retry the sagas of a filter that a retry would take (FAILED, stuck)")
    for filtered in (listing, retrying):
        for key, field in SagaFilter.model_fields.items():
            filtered.add_argument(_option(key), dest=key, help=field.description)
    listing.add_argument("--limit", type=int, default=20, help="sagas a page (20)")
    listing.add_argument("--cursor", help="the page after the one that printed it")
    retrying.add_argument("--dry-run", action="store_true", help="count and show them; change nothing")
    commands.add_parser("operation", help="how far a bulk retry has got").add_argument("operation_id")
    commands.add_parser("stats", help="counts by status and type, stuck, oldest RUNNING").add_argument(
        "--since", help="RFC 3339: count the sagas created at or after it"
    )
    args = parser.parse_args(argv)
    shows = {"status": status, "history": history, "cancel": cancel}
    try:
        if args.command in ("list", "retry"):
            given = {key: getattr(args, key) for key in SagaFilter.model_fields if getattr(args, key) is not None}
            saga_filter = SagaFilter.model_validate(given)
            if args.command == "list":
                print(list_sagas(saga_filter, args.limit, args.cursor))
            else:
                print(retry(saga_filter, args.dry_run))
        elif args.command == "operation":
            print(operation(args.operation_id))
        elif args.command == "stats":
            print(stats(args.since))
        elif args.command == "resolve":
            print(resolve(args.saga_id, args.note))
        else:
            print(shows[args.command](args.saga_id))
    except ValidationError as error:
        for problem in error.errors():
            print(f"{_option(str(problem['loc'][0]))}: {problem['msg']}", file=sys.stderr)
        return 2
    except (LookupError, ValueError, saga_search.BadCursor) as error:
        print(error, file=sys.stderr)
        return 1
    return 0
