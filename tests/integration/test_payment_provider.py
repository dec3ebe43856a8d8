"""The money lives at the payment provider, a service of its own (docs/design.md §8): the saga's records and the
provider's ledger agree after answers are lost, charges are retried, compensations refund and cancel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from chalicelib.adapters import database
from chalicelib.adapters.payment_provider import PaymentProviderClient
from chalicelib.adapters.tables import Payment, Refund, Saga, utcnow
from chalicelib.domain import payments, saga_log
from chalicelib.domain.purchase import PENDING
from infra.engine.local_engine import LocalEngine
from payment_provider.launcher import RunningProvider, start_provider
from tests.conftest import Backend
from tests.helpers import assert_consistent, give_back, invoke, provider_charges, purchase, run_saga, task_errors


def _payment(saga_id: str) -> Payment:
    with database.UnitOfWork() as uow:
        return uow.session.scalars(select(Payment).where(Payment.saga_id == saga_id)).one()


def _return_refund(saga_id: str) -> Refund:
    with database.UnitOfWork() as uow:
        return uow.session.scalars(select(Refund).where(Refund.saga_id == saga_id)).one()


def test_a_charge_whose_answer_is_lost_completes_with_exactly_one_charge(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(token="tok_lost_response_once"))

    assert run.status == "COMPLETED"
    assert ("ProcessPayment", 2) in run.path
    assert task_errors(run.saga_id, "ProcessPayment") == ["PaymentProviderUnavailable"]
    [charge] = provider_charges(run.saga_id)
    payment = _payment(run.saga_id)
    assert (payment.status, payment.provider_ref) == ("CAPTURED", charge.id)
    assert (charge.amount_cents, charge.refunded_cents) == (payment.amount_cents, 0)
    assert_consistent()


def test_a_confirm_failure_after_a_lost_answer_nets_zero_at_the_provider(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase(token="tok_lost_response", confirm_sale="fail"))

    assert run.status == "COMPENSATED"
    [charge] = provider_charges(run.saga_id)
    assert charge.refunded_cents == charge.amount_cents
    assert_consistent()


def test_refund_payment_refunds_what_the_provider_holds_even_if_our_row_never_learnt_the_charge(
    backend: Backend, engine: LocalEngine
) -> None:
    """The charge was made, its answer lost, and the payment step gave up: our row is still the intent."""
    with database.UnitOfWork() as uow:
        saga = saga_log.create_saga(uow.session, purchase(quantity=1))
        uow.session.add(Payment(saga_id=saga.id, customer_id="c-1", amount_cents=2_500, status=PENDING))
        uow.commit()
    payments.charge(saga.id, "tok_visa", 2_500, utcnow())

    answer = invoke(engine, "refund_payment", {"saga_id": saga.id})

    assert answer == {"refunded_cents": 2_500}
    [charge] = provider_charges(saga.id)
    assert charge.refunded_cents == 2_500
    refund = _return_refund(saga.id)
    assert (refund.status, refund.amount_cents) == ("ISSUED", 2_500)
    assert _payment(saga.id).provider_ref == charge.id
    assert invoke(engine, "refund_payment", {"saga_id": saga.id, "retry_count": 1}) == answer, "nothing twice"
    assert provider_charges(saga.id)[0].refunded_cents == 2_500


def test_refund_payment_is_a_no_op_when_the_provider_holds_no_charge(backend: Backend, engine: LocalEngine) -> None:
    with database.UnitOfWork() as uow:
        saga = saga_log.create_saga(uow.session, purchase(quantity=1))
        uow.commit()

    assert invoke(engine, "refund_payment", {"saga_id": saga.id}) == {"refunded_cents": 0}
    assert provider_charges(saga.id) == []


def test_a_returns_refund_lives_at_the_provider_and_a_compensated_returns_is_cancelled_there(
    backend: Backend, engine: LocalEngine
) -> None:
    bought = run_saga(engine, purchase(quantity=3))
    provider = PaymentProviderClient(str(engine.provider.url), "sk_test_local") if engine.provider else None
    assert provider is not None

    kept = run_saga(engine, give_back(bought.result["order_id"], quantity=1))
    undone = run_saga(engine, give_back(bought.result["order_id"], quantity=1, update_stock="fail"))

    assert (kept.status, undone.status) == ("COMPLETED", "COMPENSATED")
    kept_refund, undone_refund = _return_refund(kept.saga_id), _return_refund(undone.saga_id)
    at_provider = provider.get_refund(str(kept_refund.provider_refund_id))
    cancelled = provider.get_refund(str(undone_refund.provider_refund_id))
    assert at_provider is not None and (at_provider.status, at_provider.amount_cents) == ("pending", 2_500)
    assert cancelled is not None and cancelled.status == "cancelled"
    [charge] = provider_charges(bought.saga_id)
    assert charge.refunded_cents == 2_500, "a cancelled refund no longer counts"
    assert_consistent()


@pytest.fixture
def quickly_settling_provider(engine: LocalEngine, provider_ledger_url: str) -> Iterator[RunningProvider]:
    """A provider on the same ledger whose refunds settle at once; the functions are pointed at it."""
    with start_provider(0, provider_ledger_url, {"REFUND_SETTLE_SECONDS": "0"}) as provider:
        engine.extra_environment = {"PAYMENT_PROVIDER_URL": provider.url}
        try:
            yield provider
        finally:
            engine.extra_environment = {}


def test_a_settled_refund_cannot_be_cancelled_so_the_return_ends_failed_for_an_operator(
    backend: Backend, engine: LocalEngine, quickly_settling_provider: RunningProvider
) -> None:
    bought = run_saga(engine, purchase(quantity=2))

    run = run_saga(engine, give_back(bought.result["order_id"], quantity=1, update_stock="fail"))

    assert (run.status, run.path[-3:]) == ("FAILED", [("CancelRefund", 6), ("CompensationFailed", 1), ("Failed", 0)])
    assert set(task_errors(run.saga_id, "CancelRefund")) == {"RefundSettled"}
    assert run.result == {
        "failed_compensation": "cancel_refund",
        "error": {"type": "RefundSettled", "message": run.result["error"]["message"]},
    }
    provider = PaymentProviderClient(quickly_settling_provider.url, quickly_settling_provider.api_key)
    settled = provider.get_refund(str(_return_refund(run.saga_id).provider_refund_id))
    assert settled is not None and settled.status == "settled"
    with database.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, run.saga_id).status == "FAILED"
