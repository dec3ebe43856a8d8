"""Every path of the purchase saga, run on the real ASL by moto's interpreter, on both backends."""

from __future__ import annotations

from sqlalchemy import select

from chalicelib.adapters import database, saga_cache
from chalicelib.adapters.tables import Order, Payment, Refund, Reservation
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    assert_consistent,
    assert_every_attempt_audited,
    product,
    provider_charges,
    purchase,
    run_saga,
    status_history,
)


def test_approved_card_completes_with_one_order_and_one_payment(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(quantity=3))

    assert run.path == [("ReserveStock", 1), ("ProcessPayment", 1), ("ConfirmSale", 1), ("Completed", 0)]
    assert (run.status, run.execution_status) == ("COMPLETED", "SUCCEEDED")
    with database.UnitOfWork() as uow:
        order = uow.session.scalars(select(Order).where(Order.saga_id == run.saga_id)).one()
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == run.saga_id)).one()
    assert run.result == {"order_id": order.id}
    assert (order.quantity, order.status) == (3, "CONFIRMED")
    assert (payment.amount_cents, payment.status) == (3 * 2_500, "CAPTURED")
    [charge] = provider_charges(run.saga_id)
    assert (charge.id, charge.amount_cents, charge.refunded_cents) == (payment.provider_ref, 3 * 2_500, 0)
    mouse = product("SKU-MOUSE")
    assert (mouse.on_hand, mouse.reserved) == (997, 0)
    assert status_history(run.saga_id) == ["RUNNING", "COMPLETED"]
    assert saga_cache.cached_status(run.saga_id) == {"status": "COMPLETED", "version": 4}, "one version per attempt"
    assert_every_attempt_audited(run)
    assert_consistent()


def test_more_than_in_stock_is_rejected_with_nothing_to_undo(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(sku="SKU-MONITOR", quantity=201))

    assert run.path == [("ReserveStock", 1), ("Rejected", 0)]
    assert run.status == "REJECTED"
    with database.UnitOfWork() as uow:
        assert uow.session.scalars(select(Reservation).where(Reservation.saga_id == run.saga_id)).all() == []
    assert product("SKU-MONITOR").reserved == 0
    assert_every_attempt_audited(run)
    assert_consistent()


def test_unknown_sku_is_rejected(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(sku="SKU-NOPE"))

    assert run.path == [("ReserveStock", 1), ("Rejected", 0)]
    assert run.status == "REJECTED"
    assert_consistent()


def test_declined_card_releases_the_reserved_stock(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(token="tok_declined"))

    assert run.path == [("ReserveStock", 1), ("ProcessPayment", 1), ("ReleaseStock", 1), ("Compensated", 0)]
    assert run.status == "COMPENSATED"
    assert status_history(run.saga_id) == ["RUNNING", "COMPENSATING", "COMPENSATED"]
    with database.UnitOfWork() as uow:
        reservation = uow.session.scalars(select(Reservation).where(Reservation.saga_id == run.saga_id)).one()
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == run.saga_id)).one()
    assert (payment.status, payment.provider_ref) == ("DECLINED", None)
    assert provider_charges(run.saga_id) == []
    assert reservation.status == "RELEASED"
    assert (product("SKU-MOUSE").on_hand, product("SKU-MOUSE").reserved) == (1000, 0)
    assert_every_attempt_audited(run)
    assert_consistent()


def test_flaky_provider_is_retried_and_the_purchase_completes(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(token="tok_flaky"))

    assert run.path == [("ReserveStock", 1), ("ProcessPayment", 2), ("ConfirmSale", 1), ("Completed", 0)]
    assert run.status == "COMPLETED"
    with database.UnitOfWork() as uow:
        assert len(uow.session.scalars(select(Payment).where(Payment.saga_id == run.saga_id)).all()) == 1
    assert len(provider_charges(run.saga_id)) == 1, "the retry used the same idempotency key"
    assert_every_attempt_audited(run)
    assert_consistent()


def test_failed_confirmation_refunds_then_releases(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(confirm_sale="fail"))

    assert run.states == [
        "ReserveStock",
        "ProcessPayment",
        "ConfirmSale",
        "RefundPayment",
        "ReleaseStock",
        "Compensated",
    ]
    assert dict(run.path)["ConfirmSale"] == 1, "a permanent failure is not retried"
    assert run.status == "COMPENSATED"
    with database.UnitOfWork() as uow:
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == run.saga_id)).one()
        refund = uow.session.scalars(select(Refund).where(Refund.saga_id == run.saga_id)).one()
        assert uow.session.scalars(select(Order).where(Order.saga_id == run.saga_id)).all() == []
    assert payment.status == "REFUNDED"
    assert (refund.amount_cents, refund.status) == (payment.amount_cents, "ISSUED")
    [charge] = provider_charges(run.saga_id)
    assert (charge.id, charge.refunded_cents) == (payment.provider_ref, payment.amount_cents)
    assert product("SKU-MOUSE").reserved == 0
    assert_every_attempt_audited(run)
    assert_consistent()


def test_failing_refund_ends_failed_naming_the_compensation(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(confirm_sale="fail", refund_payment="fail"))

    assert run.path == [
        ("ReserveStock", 1),
        ("ProcessPayment", 1),
        ("ConfirmSale", 1),
        ("RefundPayment", 6),
        ("CompensationFailed", 1),
        ("Failed", 0),
    ]
    assert (run.status, run.execution_status) == ("FAILED", "FAILED")
    assert run.result["failed_compensation"] == "refund_payment"
    assert run.result["error"]["type"] == "InjectedFault"
    assert status_history(run.saga_id) == ["RUNNING", "COMPENSATING", "FAILED"]
    assert_every_attempt_audited(run)


def test_transient_compensation_failure_is_retried_to_success(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(token="tok_declined", release_stock="transient:2"))

    assert run.path == [("ReserveStock", 1), ("ProcessPayment", 1), ("ReleaseStock", 3), ("Compensated", 0)]
    assert run.status == "COMPENSATED"
    assert_every_attempt_audited(run)
    assert_consistent()


def test_transient_step_failure_is_retried_within_its_budget(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(reserve_stock="transient:3"))

    assert run.path[0] == ("ReserveStock", 4)
    assert run.status == "COMPLETED"
    assert_every_attempt_audited(run)


def test_transient_failures_beyond_the_retry_budget_compensate(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(process_payment="transient:9"))

    assert run.path == [
        ("ReserveStock", 1),
        ("ProcessPayment", 4),
        ("RefundPayment", 1),
        ("ReleaseStock", 1),
        ("Compensated", 0),
    ]
    assert run.status == "COMPENSATED"
    assert_every_attempt_audited(run)
    assert_consistent()


def test_permanent_failure_of_the_first_step_compensates_without_effects(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(reserve_stock="fail"))

    assert run.path == [("ReserveStock", 1), ("RefundPayment", 1), ("ReleaseStock", 1), ("Compensated", 0)]
    assert run.status == "COMPENSATED"
    assert product("SKU-MOUSE").reserved == 0
    assert_consistent()
