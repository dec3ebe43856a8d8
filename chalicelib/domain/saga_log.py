"""Saga records and their append-only audit log."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from chalicelib.adapters.tables import AuditEvent, Saga, utcnow
from chalicelib.domain.contracts import (
    COMPENSATIONS,
    NEXT_STATUSES,
    THROTTLE_RETRIES,
    THROTTLED,
    AttemptStatus,
    SagaRequest,
    SagaStatus,
    TaskError,
    action_of,
)
from chalicelib.domain.errors import safe_message

SAGA_EVENT = "saga"
OPERATOR_ACTION = "operator_action"
"""The key, in a status change's payload, of the operator's action that made it, with `caller` (and a `note`)."""
CANCEL, RESOLVE = "cancel", "resolve"
MAX_ERROR_MESSAGE = 2000
LOST_ATTEMPT = "AttemptLost"
LOST_ATTEMPT_MESSAGE = "the attempt ended before it could record its outcome (a timeout, a crash or a throttle)"
THROTTLED_MESSAGE = "Lambda refused the invocation over the function's concurrency: the step did not run"
REQUEST_ID = re.compile(r"RequestId: ([0-9A-Za-z-]{1,64})")


def new_saga_id() -> str:
    return uuid.uuid4().hex


def create_saga(
    session: Session,
    request: SagaRequest,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    correlation_id: str | None = None,
    caller: str = "",
) -> Saga:
    fields = request.model_dump(mode="json")
    saga = Saga(
        id=new_saga_id(),
        caller=caller,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        correlation_id=correlation_id,
        type=request.saga_type(),
        status=SagaStatus.RUNNING,
        input=fields,
        result={},
        # Searched by; a purchase's order and a return's product are known once its steps find them.
        customer_id=fields.get("customer_id"),
        sku=fields.get("sku"),
        order_id=fields.get("order_id"),
    )
    session.add(saga)
    session.flush()  # the audit row's foreign key needs the saga row first
    session.add(_status_event(saga.id, SagaStatus.RUNNING))
    return saga


def set_status(
    session: Session,
    saga: Saga,
    status: SagaStatus,
    failed_step: str | None = None,
    by_operator: dict[str, str] | None = None,
) -> bool:
    """Move the saga to `status` and log the change, if NEXT_STATUSES allows that move; else False. A move caused by
    a step's failure names it (`sagas.failed_step`, what a search's `step` finds). `by_operator`: the operator's
    action that made the move (`operator_action`, `caller`, a `note`), logged with it."""
    if status not in NEXT_STATUSES[SagaStatus(saga.status)]:
        return False
    saga.status = status
    if failed_step is not None:
        saga.failed_step = failed_step
    session.add(_status_event(saga.id, status, by_operator))
    return True


def cancelled(session: Session, saga_id: str) -> bool:
    """Whether an operator's cancel moved the saga to compensation: its compensations then end it CANCELLED."""
    actions = session.scalars(
        select(AuditEvent.payload).where(_rows_of(saga_id, SAGA_EVENT), AuditEvent.status == SagaStatus.COMPENSATING)
    )
    return any(payload.get(OPERATOR_ACTION) == CANCEL for payload in actions)


def record_attempt(
    session: Session,
    saga: Saga,
    step: str,
    attempt: int,
    error: BaseException | None = None,
    payload: dict[str, Any] | None = None,
    request_id: str | None = None,
    execution: str | None = None,
) -> None:
    _add_attempt(
        session,
        saga,
        step,
        attempt,
        error=(type(error).__name__, safe_message(error)) if error else None,
        payload=payload,
        request_id=request_id,
        execution=execution,
    )


def record_lost_attempts(
    session: Session, saga: Saga, step: str, before_attempt: int, execution: str | None = None
) -> int:
    """Record as failed the attempts of `step` in `execution` before `before_attempt` that left no row: killed by a
    timeout or a crash before they could write, or throttled before they ran. Step Functions counts each; so does
    the log."""
    recorded = set(session.scalars(select(AuditEvent.attempt).where(_attempts_of(saga.id, step, execution))))
    lost = [attempt for attempt in range(1, before_attempt) if attempt not in recorded]
    for attempt in lost:
        _add_attempt(session, saga, step, attempt, error=(LOST_ATTEMPT, LOST_ATTEMPT_MESSAGE), execution=execution)
    return len(lost)


def record_caught_failure(
    session: Session, saga: Saga, step: str, error: TaskError, execution: str | None = None
) -> bool:
    """Record the last attempt in `execution` of a step that a Catch led away from, from the error Step Functions
    passes on, unless that attempt recorded itself (its Lambda request id is in the log). True if it was recorded
    here. A caught throttle records every throttled attempt that no later attempt recorded
    (`record_caught_throttles`)."""
    if error.Error == THROTTLED and step not in COMPENSATIONS:  # a compensation's retrier counts every error
        return record_caught_throttles(session, saga, step, error, execution) > 0
    request_id = request_id_in(error.Cause)
    if request_id is not None:
        known = select(AuditEvent.id).where(_rows_of(saga.id, step), AuditEvent.request_id == request_id)
        if session.scalar(known) is not None:
            return False
    last = session.scalar(select(func.max(AuditEvent.attempt)).where(_attempts_of(saga.id, step, execution))) or 0
    failure = (error.Error, message_of(error.Cause))
    _add_attempt(session, saga, step, last + 1, error=failure, request_id=request_id, execution=execution)
    return True


def record_caught_throttles(
    session: Session, saga: Saga, step: str, error: TaskError, execution: str | None = None
) -> int:
    """A Catch caught a throttle: the step's throttle retrier ran out, so THROTTLE_RETRIES + 1 attempts were
    refused without running, besides those that ran (which recorded themselves). The attempts after the last one
    in the log were refused too (no attempt ran after them to record them), and are recorded as throttled; the
    step's attempts are at least the throttled ones plus those that ran. Exact when the step never ran, as in a
    burst that outlasts the budget; a lower bound when an attempt that ran was killed before it could record
    itself (docs/design.md §4.2, invariant 7). The number recorded here."""
    rows = list(
        session.execute(select(AuditEvent.attempt, AuditEvent.error_type).where(_attempts_of(saga.id, step, execution)))
    )
    last = max((attempt for attempt, _ in rows), default=0)
    ran = sum(1 for _, error_type in rows if error_type not in (LOST_ATTEMPT, THROTTLED))
    attempts = max(last + 1, THROTTLE_RETRIES + 1 + ran)
    for attempt in range(last + 1, attempts + 1):
        message = message_of(error.Cause) if attempt == attempts and error.Cause else THROTTLED_MESSAGE
        _add_attempt(session, saga, step, attempt, error=(THROTTLED, message), execution=execution)
    return attempts - last


def request_id_in(cause: str) -> str | None:
    """The Lambda request a Task error names: `requestId` in the runtime's error object, or the `RequestId: …`
    that starts a timeout's or an exit's message."""
    message = cause
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("requestId"), str) and parsed["requestId"]:
            return str(parsed["requestId"])
        message = str(parsed.get("errorMessage", ""))
    found = REQUEST_ID.search(message)
    return found.group(1) if found else None


def message_of(cause: str) -> str:
    """What a Task error's cause says (the runtime's `errorMessage` when it is the runtime's error object), as
    `safe_message` lets it be recorded."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    text = str(parsed["errorMessage"]) if isinstance(parsed, dict) and "errorMessage" in parsed else cause
    return safe_message(Exception(text))


def _add_attempt(
    session: Session,
    saga: Saga,
    step: str,
    attempt: int,
    error: tuple[str, str] | None = None,
    payload: dict[str, Any] | None = None,
    request_id: str | None = None,
    execution: str | None = None,
) -> None:
    saga.updated_at = utcnow()
    session.add(
        AuditEvent(
            saga_id=saga.id,
            step=step,
            action=action_of(step),
            status=AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED,
            attempt=attempt,
            error_type=error[0][:256] if error else None,
            error_message=error[1][:MAX_ERROR_MESSAGE] if error else None,
            payload=payload or {},
            request_id=request_id,
            execution=execution,
        )
    )


def _rows_of(saga_id: str, step: str) -> ColumnElement[bool]:
    return and_(AuditEvent.saga_id == saga_id, AuditEvent.step == step)


def _attempts_of(saga_id: str, step: str, execution: str | None) -> ColumnElement[bool]:
    """The step's attempts in `execution`, whose numbers count from 1 again in each of the saga's executions. A row
    older than the execution column (None) counts in every execution, as all rows did then."""
    return and_(_rows_of(saga_id, step), or_(AuditEvent.execution == execution, AuditEvent.execution.is_(None)))


def _status_event(saga_id: str, status: SagaStatus, payload: dict[str, str] | None = None) -> AuditEvent:
    return AuditEvent(
        saga_id=saga_id, step=SAGA_EVENT, action=SAGA_EVENT, status=status, attempt=1, payload=payload or {}
    )


def history(session: Session, saga_id: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.saga_id == saga_id).order_by(AuditEvent.id)))
