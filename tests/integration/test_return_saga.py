"""Every path of the return saga, run on the real ASL by moto's interpreter, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Order, Refund, ReturnRequestRecord, Saga
from chalicelib.domain import saga_log
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    SagaRun,
    assert_consistent,
    assert_every_attempt_audited,
    finish,
    give_back,
    product,
    purchase,
    run_saga,
    status_history,
)


def _bought(engine: LocalEngine, quantity: int = 2) -> str:
    run = run_saga(engine, purchase(quantity=quantity))
    assert run.status == "COMPLETED"
    return str(run.result["order_id"])


def _refunds(run: SagaRun) -> list[Refund]:
    with database.UnitOfWork() as uow:
        return list(uow.session.scalars(select(Refund).where(Refund.saga_id == run.saga_id)))


def _request(run: SagaRun) -> ReturnRequestRecord | None:
    with database.UnitOfWork() as uow:
        return uow.session.scalar(select(ReturnRequestRecord).where(ReturnRequestRecord.saga_id == run.saga_id))


def test_partial_return_refunds_and_restocks(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine, quantity=2)

    run = run_saga(engine, give_back(order_id, quantity=1))

    assert run.path == [("ValidateReturn", 1), ("IssueRefund", 1), ("UpdateStock", 1), ("Completed", 0)]
    assert run.status == "COMPLETED"
    [refund] = _refunds(run)
    assert (refund.amount_cents, refund.status) == (2_500, "ISSUED")
    assert product("SKU-MOUSE").on_hand == 999
    assert run.result == {"return_id": _request(run).id, "refund_cents": 2_500}  # type: ignore[union-attr]
    assert_every_attempt_audited(run)
    assert_consistent()


def test_returning_more_than_was_bought_is_rejected(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine, quantity=2)

    run = run_saga(engine, give_back(order_id, quantity=3))

    assert run.path == [("ValidateReturn", 1), ("Rejected", 0)]
    assert run.status == "REJECTED"
    assert _request(run) is None and _refunds(run) == []
    assert_consistent()


def test_already_returned_units_cannot_be_returned_again(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine, quantity=2)
    assert run_saga(engine, give_back(order_id, quantity=2)).status == "COMPLETED"

    again = run_saga(engine, give_back(order_id, quantity=1))

    assert again.status == "REJECTED"
    assert product("SKU-MOUSE").on_hand == 1000
    assert_consistent()


def test_unknown_order_is_rejected(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, give_back("0" * 32))

    assert run.path == [("ValidateReturn", 1), ("Rejected", 0)]
    assert run.status == "REJECTED"


def test_a_return_of_another_customers_order_is_rejected_as_an_unknown_order(
    backend: Backend, engine: LocalEngine
) -> None:
    order_id = _bought(engine)

    run = run_saga(engine, give_back(order_id, customer_id="c-2"))

    assert run.path == [("ValidateReturn", 1), ("Rejected", 0)]
    assert run.status == "REJECTED"
    assert _request(run) is None and _refunds(run) == []
    assert product("SKU-MOUSE").on_hand == 998
    with database.UnitOfWork() as uow:
        events = [event for event in saga_log.history(uow.session, run.saga_id) if event.step == "validate_return"]
    assert [event.error_message for event in events] == [f"customer 'c-2' has no order '{order_id}'"]
    assert run_saga(engine, give_back(order_id, customer_id="c-1")).status == "COMPLETED", "the buyer may return it"
    assert_consistent()


def test_a_return_recorded_before_returns_named_their_customer_is_rejected(
    backend: Backend, engine: LocalEngine
) -> None:
    order_id = _bought(engine)
    with database.UnitOfWork() as uow:  # as the API recorded a return before this version, without customer_id
        saga = saga_log.create_saga(uow.session, give_back(order_id))
        saga.input = {key: value for key, value in saga.input.items() if key != "customer_id"}
        uow.commit()
    arn = step_functions.start_execution(saga.type, saga.id, saga.execution_input())
    with database.UnitOfWork() as uow:
        # A plain UPDATE, as the API writes the ARN: the ORM's would bump the version the first step checks.
        uow.session.execute(update(Saga).where(Saga.id == saga.id).values(execution_arn=arn))
        uow.commit()

    run = finish(engine, saga.id)

    assert run.status == "REJECTED"
    assert _request(run) is None and _refunds(run) == []


def test_return_outside_the_window_is_rejected(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine)
    with database.UnitOfWork() as uow:
        long_ago = datetime.now(UTC) - timedelta(days=31)
        uow.session.execute(update(Order).where(Order.id == order_id).values(created_at=long_ago))
        uow.commit()

    run = run_saga(engine, give_back(order_id))

    assert run.status == "REJECTED"


def test_failed_restock_cancels_the_refund(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine)

    run = run_saga(engine, give_back(order_id, update_stock="fail"))

    assert run.path == [
        ("ValidateReturn", 1),
        ("IssueRefund", 1),
        ("UpdateStock", 1),
        ("CancelRefund", 1),
        ("Compensated", 0),
    ]
    assert run.status == "COMPENSATED"
    assert status_history(run.saga_id) == ["RUNNING", "COMPENSATING", "COMPENSATED"]
    [refund] = _refunds(run)
    assert refund.status == "CANCELLED"
    assert _request(run).status == "CLOSED"  # type: ignore[union-attr]
    assert product("SKU-MOUSE").on_hand == 998
    assert_every_attempt_audited(run)
    assert_consistent()


def test_permanent_refund_failure_closes_the_request_unrefunded(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine)

    run = run_saga(engine, give_back(order_id, issue_refund="fail"))

    assert run.path == [("ValidateReturn", 1), ("IssueRefund", 1), ("CancelRefund", 1), ("Compensated", 0)]
    assert run.status == "COMPENSATED"
    assert _refunds(run) == []
    assert _request(run).status == "CLOSED"  # type: ignore[union-attr]
    assert_consistent()


def test_a_closed_return_frees_its_units_for_another_return(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine, quantity=1)
    assert run_saga(engine, give_back(order_id, update_stock="fail")).status == "COMPENSATED"

    assert run_saga(engine, give_back(order_id)).status == "COMPLETED"
    assert_consistent()


def test_failing_cancellation_ends_failed(backend: Backend, engine: LocalEngine) -> None:
    order_id = _bought(engine)

    run = run_saga(engine, give_back(order_id, update_stock="fail", cancel_refund="fail"))

    assert run.path[-3:] == [("CancelRefund", 6), ("CompensationFailed", 1), ("Failed", 0)]
    assert (run.status, run.execution_status) == ("FAILED", "FAILED")
    assert run.result["failed_compensation"] == "cancel_refund"
    assert_every_attempt_audited(run)
