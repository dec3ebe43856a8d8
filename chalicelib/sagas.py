"""Starting sagas and reading them back: the service layer between entry points and the data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from chalicelib import audit, cache
from chalicelib.config import get_settings
from chalicelib.contracts import SagaRequest
from chalicelib.db import UnitOfWork
from chalicelib.models import Saga

StartExecution = Callable[[str, str, dict[str, Any]], str]


class FaultsNotAllowed(ValueError):
    """The request carries `faults` but SAGA_ALLOW_FAULTS is off."""


def start_saga(request: SagaRequest, start_execution: StartExecution, saga_id: str | None = None) -> Saga:
    """Record the saga as RUNNING, then start its state machine execution."""
    if request.faults and not get_settings().allow_faults:
        raise FaultsNotAllowed("faults are accepted only when SAGA_ALLOW_FAULTS=true")
    with UnitOfWork() as uow:
        saga = audit.create_saga(uow.session, request, saga_id)
        uow.commit()
    cache.write_through(saga.id, saga.status, saga.version)
    execution_input = {"saga_id": saga.id, "type": saga.type, "request": saga.input}
    arn = start_execution(saga.type, saga.id, execution_input)
    with UnitOfWork() as uow:
        # A plain UPDATE: the execution's first step may already be writing this saga (and its version).
        uow.session.execute(update(Saga).where(Saga.id == saga.id).values(execution_arn=arn))
        uow.commit()
    saga.execution_arn = arn
    return saga


def get_saga(saga_id: str) -> dict[str, Any] | None:
    with UnitOfWork() as uow:
        saga = uow.session.get(Saga, saga_id)
        return audit.describe(uow.session, saga) if saga else None


def saga_status(saga_id: str) -> str | None:
    """The saga's status from Redis when cached, else from the database (and cached again)."""
    cached = cache.cached_status(saga_id)
    if cached:
        return str(cached["status"])
    with UnitOfWork() as uow:
        saga = uow.session.scalar(select(Saga).where(Saga.id == saga_id))
    if saga is None:
        return None
    cache.write_through(saga.id, saga.status, saga.version)
    return saga.status
