"""Handlers that do nothing, loaded by the worker processes of the engine's floor: what the interpreter and the
Lambda runtime cost by themselves. They import nothing of the project, so a cold start costs only the runtime."""

from __future__ import annotations

from typing import Any


class PaymentDeclined(Exception):
    """Named as the step's error, so that the state machine takes the declined path."""


def succeed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"saga_id": event.get("saga_id")}


def decline(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise PaymentDeclined("no-op decline")
