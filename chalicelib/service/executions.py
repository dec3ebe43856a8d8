"""A saga's executions: which one is current, whether it is alive, and starting the next under a lease.

Every execution of a saga has a name that follows from the saga and a count: the first is the saga id, the n-th
`<saga id>-<n>`, and `sagas.executions` says which is current. Step Functions refuses a second execution of a
name (docs/design.md §7.3), so two processes that decide at once to start the same execution start one. The
lease (`sagas.lease_until`) keeps them from deciding at once that the *next* one is due: a process takes it with
a conditional UPDATE, and only its holder moves the count on (docs/design.md §7.2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from chalicelib.adapters import step_functions
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.database_errors import is_lock_conflict
from chalicelib.adapters.tables import Saga, utcnow
from chalicelib.domain.contracts import SagaStatus
from chalicelib.observability.telemetry import logger

T = TypeVar("T")

UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
UNREACHABLE = (SQLAlchemyError, ConnectionError)
"""(pg8000 lets a reset socket escape as a bare ConnectionError.)"""
LEASE_SECONDS = 300
"""Longer than any holder keeps it (the API function's timeout is 30 s; a reconciler pass is done with a page of
leases 30 s before they end): a lease outlives the process that took it only when that process died, and then it
lapses."""

StartExecution = Callable[[str, str, dict[str, Any]], str]
"""(saga type, execution name, input) -> the execution's ARN; an existing execution of that name counts as started."""
ExecutionStatus = Callable[[str], str | None]
"""An execution's status by ARN (RUNNING, SUCCEEDED, ...), or None when it does not exist."""
ExecutionArnFor = Callable[[str, str], str]
"""(saga type, execution name) -> the ARN that execution has, or will have."""


@dataclass(frozen=True)
class StepFunctions:
    """What the services ask of Step Functions (chalicelib/adapters/step_functions.py answers it)."""

    start: StartExecution
    status: ExecutionStatus
    arn_for: ExecutionArnFor


def boto3_step_functions() -> StepFunctions:
    """The real one: Step Functions through boto3."""
    return StepFunctions(
        step_functions.start_execution, step_functions.execution_status, step_functions.execution_arn_for
    )


class Liveness(StrEnum):
    LIVE = "LIVE"
    """The current execution runs."""
    ENDED = "ENDED"
    """It ran and ended: the next one needs a name of its own."""
    NEVER_STARTED = "NEVER_STARTED"
    """There is no execution of the current name: its start failed, or the process died before it."""


class LeaseLost(RuntimeError):
    """The lease lapsed while its holder worked, and another process may have taken it."""


class SagaEnded(RuntimeError):
    """The saga ended while its lease was held: its execution finished between the lease and the look at it."""


def execution_name(saga_id: str, number: int) -> str:
    return saga_id if number == 1 else f"{saga_id}-{number}"


def liveness(saga: Saga, sfn: StepFunctions) -> Liveness:
    """Whether the saga has a live execution. The recorded ARN is asked too: a run started before executions were
    counted, or whose ARN was recorded when the count's was not, is found by it."""
    current = sfn.arn_for(saga.type, execution_name(saga.id, saga.executions))
    if saga.execution_arn and saga.execution_arn != current and sfn.status(saga.execution_arn) == "RUNNING":
        return Liveness.LIVE
    status = sfn.status(current)
    if status is None:
        return Liveness.NEVER_STARTED
    return Liveness.LIVE if status == "RUNNING" else Liveness.ENDED


def lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Saga.lease_until.is_(None), Saga.lease_until < now)


def take_lease(saga_id: str, statuses: tuple[SagaStatus, ...], now: datetime | None = None) -> datetime | None:
    """Lease the saga if it is in one of `statuses` and nobody holds it; the lease's end, or None."""
    now = now or utcnow()
    until = now + timedelta(seconds=LEASE_SECONDS)
    try:
        with UnitOfWork() as uow:
            taken = _rows(
                uow.session.execute(
                    update(Saga)
                    .where(Saga.id == saga_id, Saga.status.in_(statuses), lease_free(now))
                    .values(lease_until=until, updated_at=Saga.updated_at)
                    .execution_options(synchronize_session=False)
                )
            )
            uow.commit()
    except DBAPIError as error:
        if is_lock_conflict(error):  # another process is taking or moving it: it is not ours
            return None
        raise
    return until if taken == 1 else None


def give_back(saga_id: str, lease: datetime) -> None:
    """Release the lease, if it is still ours. The steps of a live execution write the same row, so a conflict
    over it is run again."""

    def release() -> None:
        with UnitOfWork() as uow:
            uow.session.execute(_held(saga_id, lease).values(lease_until=None, updated_at=Saga.updated_at))
            uow.commit()

    run_again_on_conflict(release)


def start(saga: Saga, sfn: StepFunctions, lease: datetime, next_one: bool, correlation_id: str | None = None) -> str:
    """Start the saga's current execution, or (`next_one`) the one after it, then give the lease back; its ARN.

    The count moves before the start: if the start fails, or this process dies, the next attempt finds the new
    name never started and starts it, rather than counting on. A failed start gives the lease back. Once the
    execution runs, recording its ARN is a courtesy: if that write is lost, the count's name still finds it.

    The count moves only while the saga is unfinished (else SagaEnded). An execution that ended between the lease
    and DescribeExecution committed the saga's outcome before it ended, so the count's UPDATE sees it.
    """
    number = saga.executions + 1 if next_one else saga.executions
    try:
        if next_one:
            run_again_on_conflict(lambda: _move(saga.id, lease, Saga.status.in_(UNFINISHED), executions=number))
        arn = sfn.start(saga.type, execution_name(saga.id, number), saga.execution_input(correlation_id))
    except BaseException:
        with contextlib.suppress(*UNREACHABLE):
            give_back(saga.id, lease)
        raise
    saga.executions, saga.execution_arn = number, arn
    try:
        run_again_on_conflict(lambda: _move(saga.id, lease, execution_arn=arn, lease_until=None, updated_at=utcnow()))
    except (*UNREACHABLE, LeaseLost):
        logger.warning("execution %s started, but its ARN could not be recorded", arn, exc_info=True)
    logger.info("execution started", extra={"execution_arn": arn, "execution": number})
    return arn


CONFLICT_ATTEMPTS = 3
"""The steps of an execution write the saga's row while a lease holder writes it too (a new execution's first step
races the write of its ARN; a reconciler gives back the lease of a saga whose execution runs): a deadlock or a
lock timeout (MariaDB chose the holder's write as a deadlock's victim) is run again at once. Each write is one
transaction, which the server rolled back, so running it again is safe."""


def run_again_on_conflict(write: Callable[[], T]) -> T:
    """Run a database write, again while another transaction wins a conflict over its rows (up to
    CONFLICT_ATTEMPTS); what it returns. Any other error, or the last conflict, is raised."""
    for attempt in range(1, CONFLICT_ATTEMPTS):
        try:
            return write()
        except DBAPIError as error:
            if not is_lock_conflict(error):
                raise
            logger.info("a write lost a conflict over its rows; running it again", extra={"attempt": attempt})
    return write()


def _move(saga_id: str, lease: datetime, *conditions: ColumnElement[bool], **values: Any) -> None:
    with UnitOfWork() as uow:
        moved = _rows(uow.session.execute(_held(saga_id, lease).where(*conditions).values(**values)))
        still_ours = select(Saga.id).where(Saga.id == saga_id, Saga.lease_until == lease)
        if moved != 1 and conditions and uow.session.scalar(still_ours) is not None:
            raise SagaEnded(f"saga {saga_id} ended before {', '.join(values)} could be written")
        uow.commit()
    if moved != 1:
        raise LeaseLost(f"saga {saga_id}: the lease lapsed before {', '.join(values)} could be written")


def _held(saga_id: str, lease: datetime) -> Any:
    return (
        update(Saga).where(Saga.id == saga_id, Saga.lease_until == lease).execution_options(synchronize_session=False)
    )


def _rows(result: Any) -> int:
    """The rows an UPDATE matched (Session.execute types its result as a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)
