"""Saga records and their append-only audit log."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib.adapters.tables import AuditEvent, Saga, utcnow
from chalicelib.domain.contracts import NEXT_STATUSES, AttemptStatus, SagaRequest, SagaStatus, action_of

SAGA_EVENT = "saga"
MAX_ERROR_MESSAGE = 2000


def new_saga_id() -> str:
    return uuid.uuid4().hex


def create_saga(
    session: Session,
    request: SagaRequest,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    correlation_id: str | None = None,
) -> Saga:
    saga = Saga(
        id=new_saga_id(),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        correlation_id=correlation_id,
        type=request.saga_type(),
        status=SagaStatus.RUNNING,
        input=request.model_dump(mode="json"),
        result={},
    )
    session.add(saga)
    session.flush()  # the audit row's foreign key needs the saga row first
    session.add(_status_event(saga.id, SagaStatus.RUNNING))
    return saga


def set_status(session: Session, saga: Saga, status: SagaStatus) -> bool:
    """Move the saga to `status` and log the change, if NEXT_STATUSES allows that move; else False."""
    if status not in NEXT_STATUSES[SagaStatus(saga.status)]:
        return False
    saga.status = status
    session.add(_status_event(saga.id, status))
    return True


def record_attempt(
    session: Session,
    saga: Saga,
    step: str,
    attempt: int,
    error: BaseException | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    saga.updated_at = utcnow()
    session.add(
        AuditEvent(
            saga_id=saga.id,
            step=step,
            action=action_of(step),
            status=AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED,
            attempt=attempt,
            error_type=type(error).__name__ if error else None,
            error_message=str(error)[:MAX_ERROR_MESSAGE] if error else None,
            payload=payload or {},
        )
    )


def _status_event(saga_id: str, status: SagaStatus) -> AuditEvent:
    return AuditEvent(saga_id=saga_id, step=SAGA_EVENT, action=SAGA_EVENT, status=status, attempt=1, payload={})


def history(session: Session, saga_id: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.saga_id == saga_id).order_by(AuditEvent.id)))
