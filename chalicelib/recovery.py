"""Bring sagas that are not final back to a final status after the process running them died.

Every step is idempotent on the saga, so running a saga's execution again from the start is safe: steps that
took effect find their effect and return it, and the saga goes on from where it was cut.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from chalicelib.contracts import SagaStatus
from chalicelib.db import UnitOfWork
from chalicelib.models import Saga

UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)

StartExecution = Callable[[str, str, dict[str, Any]], str]
ExecutionStatus = Callable[[str], str | None]
"""The status of an execution by ARN (RUNNING, SUCCEEDED, ...), or None when it does not exist."""


def resume_unfinished(start_execution: StartExecution, execution_status: ExecutionStatus) -> list[str]:
    """Start a new execution for every unfinished saga whose execution is not running; their ids."""
    with UnitOfWork() as uow:
        unfinished = list(
            uow.session.scalars(select(Saga).where(Saga.status.in_(UNFINISHED)).order_by(Saga.created_at))
        )
    resumed = []
    for saga in unfinished:
        if saga.execution_arn and execution_status(saga.execution_arn) == "RUNNING":
            continue
        name = saga.id if saga.execution_arn is None else f"{saga.id}-resumed-{uuid.uuid4().hex[:8]}"
        arn = start_execution(saga.type, name, {"saga_id": saga.id, "type": saga.type, "request": saga.input})
        with UnitOfWork() as uow:
            uow.session.execute(update(Saga).where(Saga.id == saga.id).values(execution_arn=arn))
            uow.commit()
        resumed.append(saga.id)
    return resumed
