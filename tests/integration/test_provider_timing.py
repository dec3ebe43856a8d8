"""Money against a real provider's timing (docs/design.md §8): the provider's search by saga lags its writes (the
tests' provider never shows a charge there: PROVIDER_LISTING_LAG_SECONDS), a slow capture commits after every
retry has given up while its key answers 409 `idempotency_key_in_use`, and idempotency keys expire. A compensation
learns what the provider holds from what it keeps consistent, a same-key replay or a read by id; when it cannot,
the saga ends FAILED for an operator, never COMPENSATED with the customer's money held.

These run on the embedded backend only: what decides them is the provider's answers, not the database (the
compensations' rows and locks are covered on every backend by test_purchase_saga and test_return_saga).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from chalicelib.adapters import database, payment_provider
from chalicelib.adapters.tables import Payment, Refund, utcnow
from chalicelib.domain import payments, saga_log
from chalicelib.domain.purchase import CAPTURED, PENDING
from chalicelib.service import recovery
from chalicelib.service.executions import boto3_step_functions
from infra.engine.local_engine import LocalEngine
from payment_provider import store as ledger_store
from tests.conftest import PROVIDER_SLOW_CAPTURE_SECONDS, Backend
from tests.helpers import (
    FunctionError,
    assert_consistent,
    finish,
    give_back,
    invoke,
    provider_charges,
    purchase,
    run_saga,
)

pytestmark = pytest.mark.parametrize("backend_name", ["embedded"])
TWO_DAYS = timedelta(days=2)
"""Longer than the provider remembers an idempotency key (Stripe: 24 h; the tests' provider: its default)."""


def test_a_compensation_refunds_a_charge_whose_answer_was_lost_though_the_search_does_not_show_it(
    backend: Backend, engine: LocalEngine
) -> None:
    run = run_saga(engine, purchase(token=f"tok_lost_response_{_suffix()}", confirm_sale="fail"))

    assert run.status == "COMPENSATED"
    assert payment_provider.provider_client().charges_for_saga(run.saga_id) == [], "the search lags"
    [charge] = provider_charges(run.saga_id)
    assert charge.refunded_cents == charge.amount_cents
    assert_consistent()


def test_a_capture_that_commits_after_every_retry_ends_failed_then_an_operator_retry_refunds_it(
    backend: Backend, engine: LocalEngine
) -> None:
    run = run_saga(engine, purchase(quantity=1, token=f"tok_slow_capture_{_suffix()}"))

    assert run.status == "FAILED", "never COMPENSATED while the provider may still be charging"
    assert run.result["failed_compensation"] == "refund_payment"
    assert run.result["error"]["type"] == "PaymentProviderUnavailable"
    assert "idempotency_key_in_use" in run.result["error"]["message"]
    [charge] = _eventually_committed(run.saga_id)
    assert charge.refunded_cents == 0, "the late capture holds the customer's money until an operator acts"

    recovery.retry(run.saga_id, boto3_step_functions())
    retried = finish(engine, run.saga_id)

    assert retried.status == "COMPENSATED"
    [charge] = provider_charges(run.saga_id)
    assert charge.refunded_cents == charge.amount_cents
    assert_consistent()


def test_an_operator_retry_after_the_key_expired_does_not_refund_twice(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _purchase_with_an_intent(status=CAPTURED)
    charge = payments.charge(saga_id, "tok_visa", 2_500, utcnow())
    _record_payment(saga_id, provider_ref=charge.id)
    with database.UnitOfWork() as uow:
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == saga_id)).one()
        uow.session.add(
            Refund(saga_id=saga_id, step="refund_payment", payment_id=payment.id, amount_cents=2_500, status=PENDING)
        )
        uow.commit()
    payments.refund(charge.id, 2_500, saga_id, "refund_payment")  # made; its answer never came back
    _two_days_pass(engine, saga_id)

    assert invoke(engine, "refund_payment", {"saga_id": saga_id}) == {"refunded_cents": 2_500}

    [held] = provider_charges(saga_id)
    assert held.refunded_cents == 2_500
    [made] = payment_provider.provider_client().list_refunds(charge.id)
    with database.UnitOfWork() as uow:
        refund = uow.session.scalars(select(Refund).where(Refund.saga_id == saga_id)).one()
        assert (refund.status, refund.provider_refund_id) == ("ISSUED", made.id), "learnt: the ledger explains it"


def test_a_compensation_after_the_key_expired_refunds_the_old_charge_and_makes_no_new_one(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = _purchase_with_an_intent(status=PENDING)
    payments.charge(saga_id, "tok_visa", 2_500, utcnow())  # made; its answer never came back
    _two_days_pass(engine, saga_id)

    assert invoke(engine, "refund_payment", {"saga_id": saga_id}) == {"refunded_cents": 2_500}

    [charge] = provider_charges(saga_id)
    assert charge.refunded_cents == 2_500


def test_a_payment_resumed_after_the_key_expired_finds_its_old_charge(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _purchase_with_an_intent(status=PENDING)
    made = payments.charge(saga_id, "tok_visa", 2_500, utcnow())  # made; its answer never came back
    _two_days_pass(engine, saga_id)

    answer = invoke(engine, "process_payment", {"saga_id": saga_id, "retry_count": 1})

    assert answer["provider_ref"] == made.id
    assert provider_charges(saga_id) == [made]


def test_a_return_compensated_after_the_key_expired_with_its_refund_unknown_is_left_to_an_operator(
    backend: Backend, engine: LocalEngine
) -> None:
    bought = run_saga(engine, purchase(quantity=2))
    with database.UnitOfWork() as uow:
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == bought.saga_id)).one()
        saga = saga_log.create_saga(uow.session, give_back(bought.result["order_id"], quantity=1))
        uow.session.add(
            Refund(saga_id=saga.id, step="issue_refund", payment_id=payment.id, amount_cents=2_500, status=PENDING)
        )
        uow.commit()
        return_id, charge_id = saga.id, str(payment.provider_ref)
    _two_days_pass(engine, return_id)

    with pytest.raises(FunctionError, match="PaymentOutcomeUnknown"):
        invoke(engine, "cancel_refund", {"saga_id": return_id})
    assert payment_provider.provider_client().list_refunds(charge_id) == [], "no refund made to be cancelled"


def _suffix() -> str:
    return uuid.uuid4().hex[:12]


def _purchase_with_an_intent(status: str) -> str:
    with database.UnitOfWork() as uow:
        saga = saga_log.create_saga(uow.session, purchase(quantity=1))
        uow.session.add(Payment(saga_id=saga.id, customer_id="c-1", amount_cents=2_500, status=status))
        uow.commit()
        return saga.id


def _record_payment(saga_id: str, provider_ref: str) -> None:
    with database.UnitOfWork() as uow:
        uow.session.execute(update(Payment).where(Payment.saga_id == saga_id).values(provider_ref=provider_ref))
        uow.commit()


def _two_days_pass(engine: LocalEngine, saga_id: str) -> None:
    """For the provider's records of the saga and for our intents: the keys expire, the search catches up."""
    with database.UnitOfWork() as uow:
        for table in (Payment, Refund):
            for row in uow.session.scalars(select(table).where(table.saga_id == saga_id)):
                row.created_at -= TWO_DAYS
        uow.commit()
    assert engine.provider is not None
    ledger = ledger_store.open_ledger_database(engine.provider_database_url)
    shift = int(TWO_DAYS.total_seconds() * 1000)
    with ledger.begin() as connection:
        records, charges = ledger_store.idempotency_records, ledger_store.charges
        connection.execute(
            update(records)
            .where(records.c.idempotency_key.like(f"{saga_id}:%"))
            .values(created_at_ms=records.c.created_at_ms - shift)
        )
        connection.execute(
            update(charges).where(charges.c.saga_id == saga_id).values(created_at_ms=charges.c.created_at_ms - shift)
        )
    ledger.dispose()


def _eventually_committed(saga_id: str) -> list[payment_provider.Charge]:
    deadline = time.monotonic() + 3 * PROVIDER_SLOW_CAPTURE_SECONDS
    while not (charges := provider_charges(saga_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return charges
