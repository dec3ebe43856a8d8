"""`python -m chalicelib status SAGA_ID` / `history SAGA_ID`: a saga as readable tables in a terminal.

Reads the data of DATABASE_URL/REDIS_URL, or the embedded default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from chalicelib.service import sagas


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
        (e["time"], e["step"], e["action"], e["status"], e["attempt"], e["error_type"], e["error_message"])
        for e in events
    ]
    return table(("time", "step", "action", "status", "attempt", "error", "message"), rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib", description=__doc__)
    parser.add_argument("command", choices=("status", "history"))
    parser.add_argument("saga_id")
    args = parser.parse_args(argv)
    show = status if args.command == "status" else history
    try:
        print(show(args.saga_id))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
