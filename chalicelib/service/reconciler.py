"""The reconciler (docs/design.md §7.2): resume the sagas that are RUNNING or COMPENSATING with no live execution.

A saga is a candidate once nothing has happened to it for the grace period. That covers a saga whose execution
was never started (StartExecution failed or timed out, the process died before it), and one whose execution
ended while its row still says it is under way (a long database outage exhausts the retries; the execution
fails, times out or is aborted). Each pass leases its candidates with `SELECT … FOR UPDATE SKIP LOCKED` on
PostgreSQL, so that two passes split them (SQLite's BEGIN IMMEDIATE already serialises them), then asks Step
Functions whether each one's current execution runs, and starts the next for those it finds stuck. FAILED
sagas are left for operators; their alarm has fired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.step_functions import StepFunctionsUnavailable
from chalicelib.adapters.tables import Saga, utcnow
from chalicelib.observability.metric_names import STUCK_SAGAS_FOUND, STUCK_SAGAS_RESUMED
from chalicelib.observability.telemetry import emit, logger, saga_scope
from chalicelib.service.executions import (
    LEASE_SECONDS,
    UNFINISHED,
    LeaseLost,
    Liveness,
    StepFunctions,
    give_back,
    lease_free,
    liveness,
    start,
)

BATCH = 100
"""Sagas leased per pass; more wait for the next pass (each takes a DescribeExecution and maybe a start)."""


@dataclass
class ReconcilePass:
    found: list[str] = field(default_factory=list)
    """Sagas found stuck: unfinished, quiet for the grace period, and without a live execution."""
    resumed: list[str] = field(default_factory=list)
    """Those of them whose next execution was started."""


def reconcile(sfn: StepFunctions, grace_seconds: float, now: datetime | None = None) -> ReconcilePass:
    """One pass; emits how many sagas it found stuck and how many it resumed (both, also when 0: the alarm on
    sagas that stay stuck reads every pass)."""
    done = ReconcilePass()
    for saga, lease in _lease_candidates(now or utcnow(), grace_seconds):
        with saga_scope(saga_id=saga.id, saga_type=saga.type):
            _reconcile_one(saga, lease, sfn, done)
    emit(STUCK_SAGAS_FOUND, len(done.found))
    emit(STUCK_SAGAS_RESUMED, len(done.resumed))
    logger.info("reconciled", extra={"found": len(done.found), "resumed": len(done.resumed)})
    return done


def _lease_candidates(now: datetime, grace_seconds: float) -> list[tuple[Saga, datetime]]:
    until = now + timedelta(seconds=LEASE_SECONDS)
    quiet_since = now - timedelta(seconds=grace_seconds)
    with UnitOfWork() as uow:
        candidates = list(
            uow.session.scalars(
                select(Saga)
                .where(Saga.status.in_(UNFINISHED), Saga.updated_at <= quiet_since, lease_free(now))
                .order_by(Saga.updated_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        if candidates:
            uow.session.execute(
                update(Saga)
                .where(Saga.id.in_([saga.id for saga in candidates]))
                .values(lease_until=until, updated_at=Saga.updated_at)
                .execution_options(synchronize_session=False)
            )
        uow.commit()
    return [(saga, until) for saga in candidates]


def _reconcile_one(saga: Saga, lease: datetime, sfn: StepFunctions, done: ReconcilePass) -> None:
    try:
        state = liveness(saga, sfn)
    except StepFunctionsUnavailable:
        give_back(saga.id, lease)
        logger.warning("could not tell whether the saga's execution runs", exc_info=True)
        return
    if state is Liveness.LIVE:
        give_back(saga.id, lease)
        return
    done.found.append(saga.id)
    try:
        start(saga, sfn, lease, next_one=state is Liveness.ENDED)
    except (StepFunctionsUnavailable, LeaseLost):
        logger.warning("could not resume the saga; the next pass tries again", exc_info=True)
        return
    done.resumed.append(saga.id)
    logger.info("saga resumed", extra={"status": saga.status, "was": state})
