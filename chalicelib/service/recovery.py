"""Retry a saga (docs/design.md §3.1): a FAILED saga's compensations once their cause is fixed, or a saga stuck
RUNNING or COMPENSATING without a live execution.

Every step is idempotent on the saga, so running a saga's execution again from the start is safe: steps that
took effect find their effect and return it, and the saga goes on from where it was cut. A retry takes the
saga's lease first (service/executions.py): of concurrent retries, and of a retry and the reconciler, one
starts an execution and the others are refused.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import exc as orm_exc

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.database_errors import is_lock_conflict
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import SagaStatus
from chalicelib.service.executions import (
    UNFINISHED,
    UNREACHABLE,
    LeaseLost,
    Liveness,
    SagaEnded,
    StepFunctions,
    give_back,
    liveness,
    start,
    take_lease,
)

RETRYABLE = (SagaStatus.FAILED, *UNFINISHED)


class NotRetryable(ValueError):
    """The saga is final, has a live execution, or is being retried or resumed right now."""


def retry(saga_id: str, sfn: StepFunctions, correlation_id: str | None = None) -> Saga | None:
    """Start the saga's next execution; the saga, or None if there is no such saga.

    A FAILED saga moves to COMPENSATING first: in the new execution its forward steps refuse to act
    (SagaNotRunning), so the state machine goes down its compensations, each undoing what is left. A stuck saga's
    execution runs again as it is. Its steps log `correlation_id` (the retry request's).
    """
    with UnitOfWork() as uow:
        saga = uow.session.get(Saga, saga_id)
    if saga is None:
        return None
    if saga.status not in RETRYABLE:
        raise NotRetryable(f"saga {saga_id} is {saga.status}; only a FAILED or a stuck saga can be retried")
    lease = take_lease(saga_id, RETRYABLE)
    if lease is None:
        raise NotRetryable(f"saga {saga_id} is being retried or resumed right now, or has just ended")
    try:
        saga, next_one = _prepare(saga_id, sfn)
    except BaseException:
        # A lease that cannot be given back runs out by itself; what stopped the retry is the error to report.
        with contextlib.suppress(*UNREACHABLE):
            give_back(saga_id, lease)
        raise
    try:
        start(saga, sfn, lease, next_one, correlation_id)
    except LeaseLost:
        raise NotRetryable(f"saga {saga_id} is being retried or resumed by another process") from None
    except SagaEnded:
        raise NotRetryable(f"saga {saga_id} has just ended: another retry's execution finished it") from None
    return saga


def _prepare(saga_id: str, sfn: StepFunctions) -> tuple[Saga, bool]:
    """The leased saga, reopened if it FAILED; and whether its next execution is due (else its current one)."""
    with UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        if saga.status == SagaStatus.FAILED:
            _reopen(uow, saga)
            return saga, True
    # Asked with no transaction open: on SQLite a reader held across the call would hold up the steps' writes.
    state = liveness(saga, sfn)
    if state is Liveness.LIVE:
        raise NotRetryable(f"saga {saga_id} is {saga.status} and its execution is running")
    return saga, state is Liveness.ENDED


def _reopen(uow: UnitOfWork, saga: Saga) -> None:
    """The FAILED saga moves to COMPENSATING, so that its next execution runs its compensations."""
    try:
        saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING)
        uow.commit()
    except (orm_exc.StaleDataError, DBAPIError) as error:
        if isinstance(error, DBAPIError) and not is_lock_conflict(error):
            raise
        raise NotRetryable(f"saga {saga.id} changed while it was being retried; try again") from None
    saga_cache.write_through(saga.id, saga.status, saga.version)
