"""Lambda handlers for the local engine's in-process invocation tests."""

from __future__ import annotations

from typing import Any


class OutOfStock(Exception):
    """Named like the step error, so the invocation must report this name as the errorType."""


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        **event,
        "time_left": context.get_remaining_time_in_millis() > 0,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
    }


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise OutOfStock(f"only 2 left of {event['sku']}")
