"""A saga as the API shows it: its summary, its full view with steps, and its audit events."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from chalicelib.adapters.tables import AuditEvent, Saga
from chalicelib.domain.saga_log import OPERATOR_ACTION, SAGA_EVENT, history


def steps_of(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """The saga's steps in the order they first ran, each with its latest status and attempt count."""
    steps: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.step == SAGA_EVENT:
            continue
        step = steps.setdefault(
            event.step, {"name": event.step, "action": event.action, "status": None, "attempts": 0, "error": None}
        )
        step["attempts"] += 1
        step["status"] = event.status
        step["error"] = {"type": event.error_type, "message": event.error_message} if event.error_type else None
    return list(steps.values())


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "step": event.step,
        "action": event.action,
        "status": event.status,
        "attempt": event.attempt,
        "execution": event.execution,
        "error_type": event.error_type,
        "error_message": event.error_message,
        "payload": event.payload,
        "time": event.created_at.isoformat(),
    }


def event_message(event: dict[str, Any]) -> str | None:
    """What a history row says besides its status: an attempt's error message, or, for a status change an operator
    made, the action, its caller and its note."""
    action = event["payload"].get(OPERATOR_ACTION)
    if action is None:
        return None if event["error_message"] is None else str(event["error_message"])
    note = event["payload"].get("note")
    return f"{action} by {event['payload'].get('caller')}" + (f": {note}" if note else "")


MASKED = "\u2026"
SHOWN_LAST_CHARACTERS = 4
SHORTEST_TOKEN_SHOWN = 12
"""Below this length, 4 characters are too large a share of the token to show."""


def public_input(saga_input: dict[str, Any]) -> dict[str, Any]:
    """The saga's request as answers and pages show it: the payment token, stored once in the saga's row for the
    payment step alone, shows as `payment_method`."""
    shown = {key: value for key, value in saga_input.items() if key != "payment_token"}
    if "payment_token" in saga_input:
        shown["payment_method"] = masked_token(str(saga_input["payment_token"]))
    return shown


def masked_token(token: str) -> str:
    """`…` and the token's last 4 characters when it has 12 or more; `…` alone when it is shorter."""
    return MASKED + (token[-SHOWN_LAST_CHARACTERS:] if len(token) >= SHORTEST_TOKEN_SHOWN else "")


def summary(saga: Saga) -> dict[str, Any]:
    return {
        "saga_id": saga.id,
        "type": saga.type,
        "status": saga.status,
        "customer_id": saga.customer_id,
        "order_id": saga.order_id,
        "sku": saga.sku,
        "step": saga.failed_step,
        "created_at": saga.created_at.isoformat(),
        "updated_at": saga.updated_at.isoformat(),
        "links": {"self": f"/sagas/{saga.id}"},
    }


def describe(session: Session, saga: Saga) -> dict[str, Any]:
    return {
        "saga_id": saga.id,
        "type": saga.type,
        "status": saga.status,
        "input": public_input(saga.input),
        "result": saga.result,
        "steps": steps_of(history(session, saga.id)),
        "created_at": saga.created_at.isoformat(),
        "updated_at": saga.updated_at.isoformat(),
    }
