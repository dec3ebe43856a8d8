"""Retry many sagas at once (docs/design.md §3.1): the sagas a search's filter matches that a retry would take.

A bulk retry acts on the filter's sagas (`saga_search.matching`, what `GET /sagas` lists) that are retryable now:
FAILED, or RUNNING or COMPENSATING and stuck as the reconciler sees it (quiet for its grace period), and leased by
nobody.
A dry run counts them. A real one records an operation with the ids of those sagas at that moment (so its count is
the dry run's), and a worker takes them up one at a time, each through today's single retry (service/recovery.py)
and so under the saga's lease: a bulk retry and a single retry, or two workers, never start two executions for one
saga. A stuck saga whose execution turns out to run, or a saga retried or resolved meanwhile, is refused by that retry
and counted failed, with the reason.

The worker paces its StartExecution calls with a token bucket of `BULK_RETRY_START_RATE` (service/pacing.py), on a
clock a test can give it.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, insert, literal, or_, select, update

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.step_functions import StepFunctionsUnavailable
from chalicelib.adapters.tables import Operation, OperationSaga, Saga, utcnow
from chalicelib.domain.contracts import SagaStatus
from chalicelib.domain.errors import safe_message
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.observability.metric_names import OPERATOR_ACTIONS
from chalicelib.observability.telemetry import emit, logger, saga_scope
from chalicelib.presentation import saga_views
from chalicelib.service import recovery
from chalicelib.service.executions import LEASE_SECONDS, StepFunctions, lease_free
from chalicelib.service.pacing import Budget, BudgetSpent, Clock, SystemClock, TokenBucket
from chalicelib.service.reconciler import LOCAL_PASS_SECONDS, candidates
from chalicelib.service.saga_search import matching
from chalicelib.settings import get_settings

RETRY = "retry"
BULK_RETRY = "bulk_retry"
"""The `Action` of the OperatorActions metric a bulk retry counts for each saga whose next execution it started."""
SHOWN = 100
"""Saga ids a dry run shows."""
DESCRIBE_RATE = 2.0
"""DescribeExecution calls a second the worker makes at most (a stuck saga's retry asks whether its execution runs):
Step Functions refills 10 a second at least, of which the reconciler takes 8."""
PENDING, STARTED, RUNNING, DONE, FAILED = "PENDING", "STARTED", "RUNNING", "DONE", "FAILED"
"""An operation is PENDING, RUNNING, then DONE; each of its sagas PENDING, STARTED (taken up), then DONE or FAILED."""
ERROR_LENGTH = 500


@dataclass(frozen=True)
class Preview:
    matched: int
    sagas: list[dict[str, Any]]
    """The newest SHOWN of them, as a listing shows a saga."""


def retryable(now: datetime | None = None) -> ColumnElement[bool]:
    """The sagas a retry would take now: FAILED, or stuck as the reconciler's next pass sees them; leased by nobody."""
    now = now or utcnow()
    quiet_since = now - timedelta(seconds=get_settings().reconciler_grace_seconds)
    return or_(and_(Saga.status == SagaStatus.FAILED, lease_free(now)), candidates(quiet_since, now))


def preview(saga_filter: SagaFilter) -> Preview:
    """How many sagas a bulk retry of `saga_filter` would retry now, and the newest SHOWN of them. Changes nothing."""
    conditions = [*matching(saga_filter), retryable()]
    with UnitOfWork() as uow:
        count = uow.session.scalar(select(func.count()).select_from(Saga).where(*conditions)) or 0
        shown = uow.session.scalars(
            select(Saga).where(*conditions).order_by(Saga.created_at.desc(), Saga.id.desc()).limit(SHOWN)
        )
        return Preview(count, [saga_views.summary(saga) for saga in shown])


def submit(saga_filter: SagaFilter, caller: str) -> Operation:
    """Record a bulk retry of `saga_filter` and the sagas it matches now, for a worker to take up."""
    operation_id = uuid.uuid4().hex
    now = utcnow()
    with UnitOfWork() as uow:
        operation = Operation(
            id=operation_id,
            kind=RETRY,
            filter=saga_filter.model_dump(mode="json", exclude_none=True),
            caller=caller,
            created_at=now,
            updated_at=now,
            matched=0,
            started=0,
            done=0,
            failed=0,
            status=PENDING,
        )
        uow.session.add(operation)
        uow.session.flush()
        snapshot = select(literal(operation_id), Saga.id, literal(PENDING), Saga.executions, Saga.execution_arn).where(
            *matching(saga_filter), retryable(now)
        )
        uow.session.execute(
            insert(OperationSaga).from_select(
                ["operation_id", "saga_id", "state", "executions", "execution_arn"], snapshot
            )
        )
        operation.matched = _count(uow, operation_id)
        if not operation.matched:
            operation.status = DONE
        uow.commit()
    return operation


def read(operation_id: str) -> dict[str, Any] | None:
    """The operation as `GET /operations/{operation_id}` answers it; None if there is no such operation."""
    with UnitOfWork() as uow:
        operation = uow.session.get(Operation, operation_id)
        if operation is None:
            return None
        return {
            "operation_id": operation.id,
            "kind": operation.kind,
            "status": operation.status,
            "filter": operation.filter,
            "matched": operation.matched,
            "started": operation.started,
            "done": operation.done,
            "failed": operation.failed,
            "created_at": operation.created_at,
            "updated_at": operation.updated_at,
        }


def work(sfn: StepFunctions, budget_seconds: float = LOCAL_PASS_SECONDS, clock: Clock | None = None) -> int:
    """Take up the sagas of the open operations, oldest operation first, one at a time, within the StartExecution
    rate, until none is left or the time is up; how many were taken up. Workers at once share the sagas: each is
    taken up by one of them."""
    clock = clock or SystemClock()
    budget = Budget(clock, clock.monotonic() + budget_seconds)
    starts = TokenBucket(get_settings().bulk_retry_start_rate, clock)
    describes = TokenBucket(DESCRIBE_RATE, clock)
    paced = _describes_paced(sfn, describes, Budget(clock, math.inf))
    taken = 0
    for operation_id in _open_operations():
        while True:
            try:
                starts.take(budget)
            except BudgetSpent:
                return taken
            item = _claim(operation_id)
            if item is None:
                break
            _retry_one(item, paced)
            taken += 1
    return taken


def _describes_paced(sfn: StepFunctions, describes: TokenBucket, budget: Budget) -> StepFunctions:
    """`sfn`, each DescribeExecution waiting for its token. The start's token was taken before the saga was taken
    up, so that a worker whose time is up stops between sagas, never between a saga's reopening and its start."""

    def status(execution_arn: str) -> str | None:
        describes.take(budget)
        return sfn.status(execution_arn)

    return StepFunctions(start=sfn.start, status=status, arn_for=sfn.arn_for)


def _open_operations() -> list[str]:
    with UnitOfWork() as uow:
        return list(
            uow.session.scalars(
                select(Operation.id)
                .where(Operation.status.in_((PENDING, RUNNING)))
                .order_by(Operation.created_at, Operation.id)
            )
        )


def _claim(operation_id: str) -> OperationSaga | None:
    """Take up the next PENDING saga of the operation, or one a worker took up and died with (STARTED for longer
    than a saga's lease lasts: whatever lease it held has lapsed); None when none is left. The move is a
    compare-and-set on (state, taken_at), so of workers that pick the same saga (SQLite has no SKIP LOCKED) one
    takes it."""
    while True:
        now = utcnow()
        abandoned = and_(
            OperationSaga.state == STARTED, OperationSaga.taken_at < now - timedelta(seconds=LEASE_SECONDS)
        )
        with UnitOfWork() as uow:
            # One state at a time, so that each is read in order from the (operation_id, state, saga_id) index.
            item = _first(uow, operation_id, OperationSaga.state == PENDING) or _first(uow, operation_id, abandoned)
            if item is None:
                return None
            was, taken_at = item.state, item.taken_at
            uow.session.expunge(item)
            taken = uow.session.execute(
                update(OperationSaga)
                .where(
                    OperationSaga.operation_id == operation_id,
                    OperationSaga.saga_id == item.saga_id,
                    OperationSaga.state == was,
                    OperationSaga.taken_at.is_(None) if taken_at is None else OperationSaga.taken_at == taken_at,
                )
                .values(state=STARTED, taken_at=now)
                .execution_options(synchronize_session=False)
            )
            if _rows(taken) == 1:
                if was == PENDING:
                    uow.session.execute(
                        update(Operation)
                        .where(Operation.id == operation_id)
                        .values(started=Operation.started + 1, status=RUNNING, updated_at=now)
                    )
                uow.commit()
                return item


def _first(uow: UnitOfWork, operation_id: str, condition: ColumnElement[bool]) -> OperationSaga | None:
    return uow.session.scalar(
        select(OperationSaga)
        .where(OperationSaga.operation_id == operation_id, condition)
        .order_by(OperationSaga.saga_id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def _retry_one(item: OperationSaga, sfn: StepFunctions) -> None:
    """Retry the saga as `POST /sagas/{saga_id}/retry` would (its steps log the operation's id as their correlation
    id), and count the outcome. A saga taken over from a worker that died is counted done if that worker had got its
    next execution recorded (its count or ARN moved since the operation's snapshot), else retried."""
    operation_id, saga_id = item.operation_id, item.saga_id
    with saga_scope(saga_id=saga_id, correlation_id=operation_id):
        if item.state == STARTED and _recorded_since(item):
            _finish(operation_id, saga_id, DONE, None)
            return
        try:
            saga = recovery.retry(saga_id, sfn, correlation_id=operation_id)
        except recovery.NotRetryable as error:
            _finish(operation_id, saga_id, FAILED, str(error))
        except StepFunctionsUnavailable as error:
            _finish(operation_id, saga_id, FAILED, f"Step Functions could not start it: {safe_message(error)}")
        except Exception as error:
            _finish(operation_id, saga_id, FAILED, f"{type(error).__name__}: {safe_message(error)}")
            raise
        else:
            _finish(operation_id, saga_id, DONE if saga is not None else FAILED, None if saga else "no such saga")
            if saga is not None:
                emit(OPERATOR_ACTIONS, SagaType=saga.type, Action=BULK_RETRY)


def _finish(operation_id: str, saga_id: str, state: str, error: str | None) -> None:
    """The saga's outcome, counted once; the operation is DONE when every saga it matched is done or failed."""
    counter = Operation.done if state == DONE else Operation.failed
    with UnitOfWork() as uow:
        if _moved(uow, operation_id, saga_id, STARTED, state, error=error and error[:ERROR_LENGTH]):
            uow.session.execute(
                update(Operation)
                .where(Operation.id == operation_id)
                .values({counter: counter + 1, Operation.updated_at: utcnow()})
            )
            uow.session.execute(
                update(Operation)
                .where(Operation.id == operation_id, Operation.done + Operation.failed >= Operation.matched)
                .values(status=DONE)
            )
        uow.commit()
    if state == FAILED:
        logger.info("bulk retry refused", extra={"operation_id": operation_id, "reason": error})


def _recorded_since(item: OperationSaga) -> bool:
    with UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, item.saga_id)
        return saga.executions != item.executions or saga.execution_arn != item.execution_arn


def _moved(uow: UnitOfWork, operation_id: str, saga_id: str, was: str, state: str, **values: Any) -> bool:
    moved = uow.session.execute(
        update(OperationSaga)
        .where(OperationSaga.operation_id == operation_id, OperationSaga.saga_id == saga_id, OperationSaga.state == was)
        .values(state=state, **values)
        .execution_options(synchronize_session=False)
    )
    return _rows(moved) == 1


def _rows(result: Any) -> int:
    """The rows an UPDATE matched (Session.execute types its result as a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def _count(uow: UnitOfWork, operation_id: str) -> int:
    counted = select(func.count()).select_from(OperationSaga).where(OperationSaga.operation_id == operation_id)
    return int(uow.session.scalar(counted) or 0)
