"""Lambda handlers that the local engine's worker tests load in place of the real ones."""

from __future__ import annotations

import os
import time
from typing import Any


class OutOfStock(Exception):
    """Named like the step error, so the invocation must report this name as the errorType."""


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("fail"):
        raise OutOfStock(f"only 2 left of {event['sku']}")
    return {
        "event": event,
        "time_left": context.get_remaining_time_in_millis() > 0,
        "function_name": context.function_name,
        "level": os.environ.get("LEVEL"),
        "database_url": os.environ.get("DATABASE_URL"),
        "pid": os.getpid(),
    }


def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 0)))
    return {"slept": event.get("seconds", 0)}
