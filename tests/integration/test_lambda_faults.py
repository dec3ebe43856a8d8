"""What Lambda does to a step, through the real interpreter and real worker processes: a timeout kills the
attempt before it commits, a crash ends the process after its commit, a throttle refuses the invocation.

Each case asserts the path (states and attempts), the errors Step Functions saw, the audit log (every attempt,
the killed ones too) and the rows; then the invariants of docs/design.md §4.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from chalicelib.adapters import database
from chalicelib.adapters.tables import Order, Refund, Reservation
from chalicelib.domain.saga_log import LOST_ATTEMPT
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    assert_consistent,
    assert_every_attempt_audited,
    audit_rows,
    give_back,
    product,
    purchase,
    run_saga,
    task_errors,
)

pytestmark = pytest.mark.backends("postgres")
"""What Lambda does to an attempt (a timeout kills it, a crash ends its process, a throttle refuses it) is
the runtime's doing, not the data layer's; that a retried step finds what an earlier attempt committed is
tested on every backend by test_idempotency.py (every handler delivered twice). So one backend: PostgreSQL,
the deployed default."""

TIMED_OUT = "Sandbox.Timedout"
EXITED = "Runtime.ExitError"


def _count(model: type, **where: str) -> int:
    with database.UnitOfWork() as uow:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(uow.session.scalar(query) or 0)


def test_a_forward_step_killed_by_its_timeout_is_retried_and_the_killed_attempt_audited(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    run = run_saga(short_timeouts, purchase(process_payment="timeout:1"))

    assert (run.status, run.path) == (
        "COMPLETED",
        [("ReserveStock", 1), ("ProcessPayment", 2), ("ConfirmSale", 1), ("Completed", 0)],
    )
    assert task_errors(run.saga_id, "ProcessPayment") == [TIMED_OUT]
    assert audit_rows(run.saga_id, "process_payment") == [(1, "FAILED", LOST_ATTEMPT), (2, "SUCCEEDED", None)]
    assert_every_attempt_audited(run)
    assert_consistent()


def test_a_forward_step_that_crashes_after_its_commit_takes_effect_once(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    before = product("SKU-MOUSE")

    run = run_saga(short_timeouts, purchase(confirm_sale="crash:1"))

    assert (run.status, run.path) == (
        "COMPLETED",
        [("ReserveStock", 1), ("ProcessPayment", 1), ("ConfirmSale", 2), ("Completed", 0)],
    )
    assert task_errors(run.saga_id, "ConfirmSale") == [EXITED]
    # The crashed attempt committed (and recorded) the sale; the retry found it and changed nothing.
    assert audit_rows(run.saga_id, "confirm_sale") == [(1, "SUCCEEDED", None), (2, "SUCCEEDED", None)]
    assert _count(Order, saga_id=run.saga_id) == 1
    after = product("SKU-MOUSE")
    assert (after.on_hand, after.reserved) == (before.on_hand - 2, before.reserved)
    assert_every_attempt_audited(run)
    assert_consistent()


def test_a_forward_step_that_times_out_on_every_attempt_is_compensated_and_its_last_attempt_recorded(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    run = run_saga(short_timeouts, purchase(confirm_sale="timeout"))

    assert (run.status, run.path) == (
        "COMPENSATED",
        [
            ("ReserveStock", 1),
            ("ProcessPayment", 1),
            ("ConfirmSale", 4),
            ("RefundPayment", 1),
            ("ReleaseStock", 1),
            ("Compensated", 0),
        ],
    )
    assert task_errors(run.saga_id, "ConfirmSale") == [TIMED_OUT] * 4
    # Attempts 1-3 are recorded by the next attempt, the last by the compensation its Catch led to.
    assert audit_rows(run.saga_id, "confirm_sale") == [(n, "FAILED", LOST_ATTEMPT) for n in (1, 2, 3)] + [
        (4, "FAILED", TIMED_OUT)
    ]
    assert_every_attempt_audited(run)
    assert_consistent()


def test_a_compensation_killed_by_its_timeout_is_retried(backend: Backend, short_timeouts: LocalEngine) -> None:
    run = run_saga(short_timeouts, purchase(confirm_sale="fail", refund_payment="timeout:1"))

    assert run.status == "COMPENSATED"
    assert ("RefundPayment", 2) in run.path
    assert task_errors(run.saga_id, "RefundPayment") == [TIMED_OUT]
    assert audit_rows(run.saga_id, "refund_payment") == [(1, "FAILED", LOST_ATTEMPT), (2, "SUCCEEDED", None)]
    assert _count(Refund, saga_id=run.saga_id) == 1
    assert_every_attempt_audited(run)
    assert_consistent()


def test_a_compensation_that_crashes_after_its_commit_undoes_once(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    before = product("SKU-MOUSE")

    run = run_saga(short_timeouts, purchase(token="tok_declined", release_stock="crash:1"))

    assert (run.status, run.path) == (
        "COMPENSATED",
        [("ReserveStock", 1), ("ProcessPayment", 1), ("ReleaseStock", 2), ("Compensated", 0)],
    )
    assert task_errors(run.saga_id, "ReleaseStock") == [EXITED]
    after = product("SKU-MOUSE")
    assert (after.on_hand, after.reserved) == (before.on_hand, before.reserved)
    with database.UnitOfWork() as uow:
        assert uow.session.scalar(select(Reservation.status).where(Reservation.saga_id == run.saga_id)) == "RELEASED"
    assert_every_attempt_audited(run)
    assert_consistent()


@pytest.mark.parametrize(("fault", "error"), [("timeout", TIMED_OUT), ("crash", EXITED)])
def test_a_compensation_killed_on_its_last_attempt_ends_the_saga_failed_naming_it(
    backend: Backend, short_timeouts: LocalEngine, fault: str, error: str
) -> None:
    run = run_saga(short_timeouts, purchase(confirm_sale="fail", refund_payment=fault))

    assert (run.status, run.execution_status) == ("FAILED", "FAILED")
    assert run.path[-3:] == [("RefundPayment", 6), ("CompensationFailed", 1), ("Failed", 0)]
    assert task_errors(run.saga_id, "RefundPayment") == [error] * 6
    assert run.result["failed_compensation"] == "refund_payment"
    assert run.result["error"]["type"] == error
    rows = audit_rows(run.saga_id, "refund_payment")
    assert [attempt for attempt, _, _ in rows] == [1, 2, 3, 4, 5, 6]
    if fault == "timeout":  # nothing was committed: every attempt is recorded from outside
        assert rows[-1] == (6, "FAILED", TIMED_OUT)
    else:  # each attempt committed its (idempotent) refund before dying: the refund happened once
        assert {status for _, status, _ in rows} == {"SUCCEEDED"}
        assert _count(Refund, saga_id=run.saga_id) == 1
    assert_every_attempt_audited(run)
    assert_consistent()


def test_a_return_step_that_crashes_after_its_commit_restocks_once(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    bought = run_saga(short_timeouts, purchase(quantity=2))
    before = product("SKU-MOUSE")

    run = run_saga(short_timeouts, give_back(bought.result["order_id"], quantity=1, update_stock="crash:1"))

    assert (run.status, run.path[-2:]) == ("COMPLETED", [("UpdateStock", 2), ("Completed", 0)])
    assert product("SKU-MOUSE").on_hand == before.on_hand + 1
    assert_every_attempt_audited(run)
    assert_consistent()


@pytest.mark.alone  # a burst of sagas, each step's function holding a database connection
def test_a_burst_over_the_payment_functions_reserved_concurrency_is_absorbed_by_retries(
    backend: Backend, engine: LocalEngine
) -> None:
    engine.parameter_overrides = {"PaymentConcurrency": "1"}  # the throttle's waits keep the deployed scale
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            runs = list(pool.map(lambda _: run_saga(engine, purchase(quantity=1)), range(16)))
    finally:
        engine.parameter_overrides = {}

    assert {run.status for run in runs} == {"COMPLETED"}
    throttled = [e for run in runs for e in task_errors(run.saga_id, "ProcessPayment")]
    assert throttled, "no invocation was throttled: the burst did not reach the reserved concurrency"
    assert set(throttled) == {"Lambda.TooManyRequestsException"}
    for run in runs:
        assert_every_attempt_audited(run)
    assert_consistent()
