"""Throttles over process_payment's reserved concurrency, through the real interpreter and worker processes
(docs/design.md §2.4, §7.3): valid purchases queued behind slots held to their timeout all complete, and when
throttles outlast the budget the saga is compensated, the last resort, counted; every throttled attempt is in
the audit log, as many as Step Functions' history holds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import THROTTLE_RETRIES, THROTTLED, TaskError
from chalicelib.domain.errors import TransientFault
from chalicelib.observability.metric_names import THROTTLE_RETRIES_EXHAUSTED
from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import discard_logs
from infra.tools import invariants
from tests.conftest import Backend
from tests.helpers import (
    FunctionLogs,
    SagaRun,
    assert_consistent,
    assert_every_attempt_audited,
    audit_rows,
    provider_charges,
    purchase,
    run_saga,
    task_errors,
)

pytestmark = pytest.mark.backends("postgres")
"""Throttles come from the functions' reserved concurrency, not the data layer; the audit rows they leave are
the same INSERTs every backend runs in test_status_and_failures.py. So one backend: PostgreSQL, the deployed
default."""

PAYMENT = "ProcessPaymentFunction"
HOLD_SECONDS = 4.0
"""Every function's timeout here: how long a `timeout` fault holds its reserved slot."""


def _metrics(logs: FunctionLogs, name: str) -> list[dict[str, object]]:
    """The EMF records of `name` in the functions' logs."""
    lines = logs.getvalue().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]
    return [record for record in records if name in record]


@pytest.fixture
def payment_slots(engine: LocalEngine) -> Iterator[LocalEngine]:
    """process_payment with the given reserved concurrency, every function timing out after HOLD_SECONDS."""
    engine.function_timeout = HOLD_SECONDS
    yield engine
    engine.function_timeout = None
    engine.parameter_overrides = {}
    engine.throttle_wait_scale = None
    engine.log_sink = discard_logs


def _wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the holders never took every reserved slot"
        time.sleep(0.01)


def _holding_every_slot(engine: LocalEngine, pool: ThreadPoolExecutor, slots: int) -> list[Future[SagaRun]]:
    """Start `slots` purchases whose first payment attempt hangs until its timeout; return once they hold every
    reserved slot of process_payment."""
    holders = [pool.submit(run_saga, engine, purchase(quantity=1, process_payment="timeout:1")) for _ in range(slots)]
    assert engine.functions is not None
    runtime = engine.functions.runtime
    _wait_until(lambda: runtime.concurrent_executions(PAYMENT) == slots)
    return holders


def _every_attempt_in_the_log(run: SagaRun) -> None:
    assert_every_attempt_audited(run)
    with database.UnitOfWork() as uow:
        arn = str(uow.session.get_one(Saga, run.saga_id).execution_arn)
        history = {run.saga_id: step_functions.execution_history(arn)}
        assert invariants.unaudited_attempts(uow.session, run.saga_id, history) == []


def test_valid_purchases_queued_behind_slots_held_to_their_timeout_all_complete_and_every_throttle_is_audited(
    backend: Backend, payment_slots: LocalEngine
) -> None:
    payment_slots.parameter_overrides = {"PaymentConcurrency": "2"}

    with ThreadPoolExecutor(max_workers=8) as pool:
        holders = _holding_every_slot(payment_slots, pool, slots=2)
        queued = list(pool.map(lambda _: run_saga(payment_slots, purchase(quantity=1)), range(6)))
        runs = [holder.result() for holder in holders] + queued

    assert {run.status for run in runs} == {"COMPLETED"}
    throttled = [error for run in queued for error in task_errors(run.saga_id, "ProcessPayment")]
    assert THROTTLED in throttled, "no payment was throttled: the holders did not hold the slots while they queued"
    for run in runs:
        _every_attempt_in_the_log(run)
    assert_consistent()


def test_throttles_that_outlast_the_budget_compensate_the_purchase_count_it_and_audit_every_refused_attempt(
    backend: Backend, payment_slots: LocalEngine
) -> None:
    logs = FunctionLogs()
    payment_slots.log_sink = logs
    payment_slots.parameter_overrides = {"PaymentConcurrency": "1"}
    payment_slots.throttle_wait_scale = 0.0001  # the budget, shrunk far below the time the slot is held

    with ThreadPoolExecutor(max_workers=1) as pool:
        holders = _holding_every_slot(payment_slots, pool, slots=1)
        lost = run_saga(payment_slots, purchase(quantity=1))
        held = [holder.result() for holder in holders]

    refused = THROTTLE_RETRIES + 1
    assert held[0].status == "COMPLETED"
    assert (lost.status, lost.states) == (
        "COMPENSATED",
        ["ReserveStock", "ProcessPayment", "RefundPayment", "ReleaseStock", "Compensated"],
    )
    assert ("ProcessPayment", refused) in lost.path
    assert task_errors(lost.saga_id, "ProcessPayment") == [THROTTLED] * refused
    assert audit_rows(lost.saga_id, "process_payment") == [(n, "FAILED", THROTTLED) for n in range(1, refused + 1)]
    assert provider_charges(lost.saga_id) == []
    counted = _metrics(logs, THROTTLE_RETRIES_EXHAUSTED)
    assert [(m["Step"], m["SagaType"], m["saga_id"], m[THROTTLE_RETRIES_EXHAUSTED]) for m in counted] == [
        ("process_payment", "purchase", lost.saga_id, [1.0])
    ]
    for run in (lost, *held):
        _every_attempt_in_the_log(run)
    assert_consistent()


def test_a_caught_throttle_records_the_refused_attempts_after_those_that_ran_and_names_them_throttled(
    backend: Backend,
) -> None:
    """Attempt 1 refused (recorded as lost by attempt 2), attempt 2 ran and failed, then the throttle retrier ran
    out: THROTTLE_RETRIES + 1 refused in all, so attempts 3 to THROTTLE_RETRIES + 2 are recorded as throttled."""
    with database.UnitOfWork() as uow:
        saga = saga_log.create_saga(uow.session, purchase(quantity=1))
        saga_log.record_lost_attempts(uow.session, saga, "process_payment", before_attempt=2)
        saga_log.record_attempt(uow.session, saga, "process_payment", 2, error=TransientFault("injected"))
        recorded = saga_log.record_caught_failure(
            uow.session, saga, "process_payment", TaskError(Error=THROTTLED, Cause="Rate Exceeded.")
        )
        uow.commit()

    last = THROTTLE_RETRIES + 2
    assert recorded
    assert audit_rows(saga.id, "process_payment") == [
        (1, "FAILED", saga_log.LOST_ATTEMPT),
        (2, "FAILED", "TransientFault"),
        *[(n, "FAILED", THROTTLED) for n in range(3, last + 1)],
    ]
