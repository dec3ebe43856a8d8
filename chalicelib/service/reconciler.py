"""The reconciler (docs/design.md §7.2): resume the sagas that are RUNNING or COMPENSATING with no live execution.

A saga is a candidate once nothing has happened to it for the grace period. That covers a saga whose execution
was never started (StartExecution failed or timed out, the process died before it), and one whose execution
ended while its row still says it is under way (a long database outage exhausts the retries; the execution
fails, times out or is aborted). FAILED sagas are left for operators; their alarm has fired.

A pass works through the candidates page by page, in (updated_at, id) order, until none is left or its time is
up, a few sagas at a time. Each page is leased with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL,
so that two passes split the sagas (SQLite's BEGIN IMMEDIATE already serialises them); the pass asks Step
Functions whether each one's current execution runs, gives back the lease of those whose execution does, and
starts the next for the others.
The next page starts after the last saga looked at, so a saga is looked at once per pass, whatever it turned out
to be. Its calls to Step Functions are paced to stay within the account's quotas (service/pacing.py).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import DBAPIError

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.database_errors import transience
from chalicelib.adapters.step_functions import StepFunctionsUnavailable
from chalicelib.adapters.tables import Saga, utcnow
from chalicelib.observability.metric_names import STUCK_SAGAS_FOUND, STUCK_SAGAS_RESUMED
from chalicelib.observability.telemetry import emit, logger, saga_scope
from chalicelib.service.executions import (
    LEASE_SECONDS,
    UNFINISHED,
    UNREACHABLE,
    LeaseLost,
    Liveness,
    SagaEnded,
    StepFunctions,
    give_back,
    lease_free,
    liveness,
    run_again_on_conflict,
    start,
)
from chalicelib.service.pacing import Budget, BudgetSpent, Clock, SystemClock, TokenBucket, paced
from chalicelib.settings import get_settings

PAGE_SIZE = 100
"""Sagas leased at a time."""
LOCAL_PASS_SECONDS = 900.0
"""The time budget of a pass run by the local tools: as long as a Lambda function may run."""
WORKERS = 4
"""Sagas of a page reconciled at once: a saga's turn is mostly waiting, for Step Functions' answers and for its row
when the first step of the execution just started holds it, so a few at once drain a backlog faster. The token
buckets keep the calls within their rates however many wait."""
LEASE_MARGIN_SECONDS = 30.0
"""A page is worked through this long before its leases end, so that no other process takes a saga meanwhile."""
GIVE_BACK_TRIES = 3

Key = tuple[datetime, str]
"""Where a saga stands in a pass's order: (updated_at, id)."""


@dataclass
class ReconcilePass:
    found: list[str] = field(default_factory=list)
    """Sagas found stuck: unfinished, quiet for the grace period, and without a live execution."""
    resumed: list[str] = field(default_factory=list)
    """Those of them whose next execution was started."""
    drained: bool = False
    """Whether the pass looked at every candidate; if not, its time ran out and the next pass goes on."""


def reconcile(
    sfn: StepFunctions,
    grace_seconds: float,
    budget_seconds: float = LOCAL_PASS_SECONDS,
    clock: Clock | None = None,
    page_size: int = PAGE_SIZE,
) -> ReconcilePass:
    """One pass, within `budget_seconds`; emits how many sagas it found stuck and how many it resumed (both, also
    when 0: the alarm on sagas that stay stuck reads every pass)."""
    clock = clock or SystemClock()
    began = clock.monotonic()
    budget = Budget(clock, began + budget_seconds)
    settings = get_settings()
    starts = TokenBucket(settings.reconciler_start_rate, clock)
    describes = TokenBucket(settings.reconciler_describe_rate, clock)
    # Fixed for the pass: a saga resumed by this pass is not a candidate again before the next one.
    quiet_since = utcnow() - timedelta(seconds=grace_seconds)
    done = ReconcilePass()
    after: Key | None = None
    while not budget.spent():
        page = run_again_on_conflict(functools.partial(_lease_page, quiet_since, after, page_size))
        if not page:
            done.drained = True
            break
        page_budget = budget.within(LEASE_SECONDS - LEASE_MARGIN_SECONDS)
        last = _work_through(page, paced(sfn, starts, describes, page_budget), page_budget, done)
        if last is None:
            break
        after = last
    emit(STUCK_SAGAS_FOUND, len(done.found))
    emit(STUCK_SAGAS_RESUMED, len(done.resumed))
    seconds = round(clock.monotonic() - began, 1)
    logger.info(
        "reconciled",
        extra={"found": len(done.found), "resumed": len(done.resumed), "drained": done.drained, "seconds": seconds},
    )
    return done


def candidates(quiet_since: datetime, now: datetime) -> ColumnElement[bool]:
    """The sagas a pass looks at: unfinished, quiet since `quiet_since`, and leased by nobody at `now`. Of them it
    resumes those without a live execution; what operators are shown as stuck (`GET /sagas/stats`) is this."""
    return and_(Saga.status.in_(UNFINISHED), Saga.updated_at <= quiet_since, lease_free(now))


def _lease_page(quiet_since: datetime, after: Key | None, size: int) -> list[tuple[Saga, datetime]]:
    now = utcnow()
    until = now + timedelta(seconds=LEASE_SECONDS)
    query = select(Saga).where(candidates(quiet_since, now))
    if after is not None:
        updated_at, saga_id = after
        query = query.where(or_(Saga.updated_at > updated_at, and_(Saga.updated_at == updated_at, Saga.id > saga_id)))
    with UnitOfWork() as uow:
        page = list(
            uow.session.scalars(query.order_by(Saga.updated_at, Saga.id).limit(size).with_for_update(skip_locked=True))
        )
        if page:
            uow.session.execute(
                update(Saga)
                .where(Saga.id.in_([saga.id for saga in page]))
                .values(lease_until=until, updated_at=Saga.updated_at)
                .execution_options(synchronize_session=False)
            )
        uow.commit()
    return [(saga, until) for saga in page]


def _work_through(
    page: list[tuple[Saga, datetime]], sfn: StepFunctions, budget: Budget, done: ReconcilePass
) -> Key | None:
    """Reconcile the page's sagas, WORKERS at a time, until its time is up, then give back the leases of those not
    done; the key of the last saga of the page's beginning that was all looked at (None if none was)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        looked_at = list(pool.map(lambda leased: _look_at(leased[0], leased[1], sfn, budget, done), page))
    _give_back_all([saga.id for saga, _ in page], page[0][1])
    last: Key | None = None
    for (saga, _), seen in zip(page, looked_at, strict=True):
        if not seen:
            break
        last = (saga.updated_at, saga.id)
    return last


def _look_at(saga: Saga, lease: datetime, sfn: StepFunctions, budget: Budget, done: ReconcilePass) -> bool:
    if budget.spent():
        return False
    try:
        with saga_scope(saga_id=saga.id, saga_type=saga.type):
            _reconcile_one(saga, lease, sfn, done)
    except BudgetSpent:
        return False
    return True


def _reconcile_one(saga: Saga, lease: datetime, sfn: StepFunctions, done: ReconcilePass) -> None:
    try:
        state = liveness(saga, sfn)
    except StepFunctionsUnavailable:
        # A throttled or failed DescribeExecution says nothing about the execution: the next pass asks again.
        _let_go(saga.id, lease)
        logger.warning("could not tell whether the saga's execution runs", exc_info=True)
        return
    if state is Liveness.LIVE:
        _let_go(saga.id, lease)
        return
    try:
        start(saga, sfn, lease, next_one=state is Liveness.ENDED)
    except SagaEnded:
        logger.info("the saga's execution ended it while the pass looked: it was not stuck")
        return
    except (StepFunctionsUnavailable, LeaseLost, *UNREACHABLE):
        done.found.append(saga.id)
        logger.warning("could not resume the saga; the next pass tries again", exc_info=True)
        return
    done.found.append(saga.id)
    done.resumed.append(saga.id)
    logger.info("saga resumed", extra={"status": saga.status, "was": state})


def _let_go(saga_id: str, lease: datetime) -> None:
    """Give back one saga's lease; if the database will not, the page's release (_give_back_all) tries again after
    the others were looked at, so that one saga's row does not stop the pass."""
    try:
        give_back(saga_id, lease)
    except UNREACHABLE:
        logger.warning("could not give the saga's lease back; the page's release tries again", exc_info=True)


def _give_back_all(saga_ids: list[str], lease: datetime) -> None:
    """Release the leases of a page's sagas that are still ours (they all share the page's lease): those the pass
    had no time for, and any whose release failed. The steps of the executions just started write the same rows,
    so a deadlock or a lock wait is tried again; a lease that still cannot be given back lapses by itself."""
    for tries_left in reversed(range(GIVE_BACK_TRIES)):
        try:
            with UnitOfWork() as uow:
                uow.session.execute(
                    update(Saga)
                    .where(Saga.id.in_(saga_ids), Saga.lease_until == lease)
                    .values(lease_until=None, updated_at=Saga.updated_at)
                    .execution_options(synchronize_session=False)
                )
                uow.commit()
            return
        except DBAPIError as error:
            if transience(error) is None:
                raise
            if not tries_left:
                logger.warning("could not give the page's leases back; they lapse by themselves", exc_info=True)
