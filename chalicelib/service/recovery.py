"""Bring sagas back to a final status: after the process running them died, or after an operator fixed
the cause of a failed compensation.

Every step is idempotent on the saga, so running a saga's execution again from the start is safe: steps that
took effect find their effect and return it, and the saga goes on from where it was cut.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import SagaStatus

UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)

StartExecution = Callable[[str, str, dict[str, Any]], str]
ExecutionStatus = Callable[[str], str | None]
"""The status of an execution by ARN (RUNNING, SUCCEEDED, ...), or None when it does not exist."""
ExecutionArnFor = Callable[[str, str], str]
"""The ARN of the execution of a saga type with a given name."""


def resume_unfinished(
    start_execution: StartExecution, execution_status: ExecutionStatus, execution_arn_for: ExecutionArnFor
) -> list[str]:
    """Start a new execution for every unfinished saga whose execution is not running; their ids.

    A saga with no recorded execution may still have one: the process may have died between starting it
    and recording it. Its ARN follows from its name, the saga id, so it is looked up before starting anew.
    """
    with UnitOfWork() as uow:
        unfinished = list(
            uow.session.scalars(select(Saga).where(Saga.status.in_(UNFINISHED)).order_by(Saga.created_at))
        )
    resumed = []
    for saga in unfinished:
        arn = saga.execution_arn or execution_arn_for(saga.type, saga.id)
        status = execution_status(arn)
        if status == "RUNNING":
            continue
        if status is not None:
            saga.execution_arn = arn  # it ran and ended: the next one needs a name of its own
        run_again(saga, start_execution, "resumed")
        resumed.append(saga.id)
    return resumed


class NotRetryable(ValueError):
    """Only a FAILED saga's compensation can be retried."""


def retry_failed(saga_id: str, start_execution: StartExecution, correlation_id: str | None = None) -> Saga | None:
    """Once the cause of a failed compensation is fixed: run the saga's compensations again. None if unknown.

    The saga moves FAILED -> COMPENSATING; in the new execution its forward steps refuse to act
    (SagaNotRunning), so the state machine goes down its compensations, each undoing what is left.
    """
    with UnitOfWork() as uow:
        saga = uow.session.get(Saga, saga_id)
        if saga is None:
            return None
        if saga.status != SagaStatus.FAILED:
            raise NotRetryable(f"saga {saga_id} is {saga.status}; only a FAILED saga can be retried")
        saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING)
        uow.commit()
    saga_cache.write_through(saga.id, saga.status, saga.version)
    run_again(saga, start_execution, "retry", correlation_id)
    return saga


def run_again(saga: Saga, start_execution: StartExecution, reason: str, correlation_id: str | None = None) -> str:
    """Start a new execution of the saga's state machine (its first keeps the saga id as its name).

    Its steps log `correlation_id` (the retry request's), else the id of the request that started the saga.
    """
    name = saga.id if saga.execution_arn is None else f"{saga.id}-{reason}-{uuid.uuid4().hex[:8]}"
    arn = start_execution(saga.type, name, saga.execution_input(correlation_id))
    with UnitOfWork() as uow:
        uow.session.execute(update(Saga).where(Saga.id == saga.id).values(execution_arn=arn))
        uow.commit()
    saga.execution_arn = arn
    return arn
