"""`python -m chalicelib status SAGA_ID` / `history SAGA_ID`: a saga as readable tables in a terminal.
`resolve SAGA_ID --note TEXT` closes a FAILED saga fixed by hand; `cancel SAGA_ID` cancels a RUNNING one (its
compensations undo what was done); each prints the saga as `status` does.

Reads and writes the data of DATABASE_URL/REDIS_URL, or the embedded default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from chalicelib.domain.contracts import FreeText
from chalicelib.presentation import saga_views
from chalicelib.service import operator_actions, sagas


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("status", "history", "cancel"):
        commands.add_parser(name).add_argument("saga_id")
    resolving = commands.add_parser("resolve")
    resolving.add_argument("saga_id")
    resolving.add_argument("--note", required=True, help="what was fixed by hand, for the saga's history")
    args = parser.parse_args(argv)
    shows = {"status": status, "history": history, "cancel": cancel}
    try:
        print(resolve(args.saga_id, args.note) if args.command == "resolve" else shows[args.command](args.saga_id))
    except (LookupError, ValueError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0
