"""The payment provider's ledger against our records (docs/design.md §4): per purchase, what the provider holds
nets to what the saga's outcome says; per return, its refund is there or cancelled there; and the provider holds
no charge or refund that our records do not explain."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib.adapters.payment_provider import Charge, PaymentProviderClient
from chalicelib.adapters.payment_provider import Refund as ProviderRefund
from chalicelib.adapters.tables import Payment, Refund, Saga
from chalicelib.domain.contracts import UNDONE, SagaStatus
from chalicelib.domain.purchase import ISSUED

SETTLED_STATES = frozenset({"pending", "settled"})


def violations(session: Session, provider: PaymentProviderClient) -> list[str]:
    charges = provider.list_charges()
    provider_refunds = {refund.id: refund for refund in provider.list_refunds()}
    sagas = {saga.id: saga for saga in session.scalars(select(Saga))}
    by_saga: dict[str, list[Charge]] = defaultdict(list)
    problems = []
    for charge in charges:
        saga = sagas.get(charge.saga_id)
        if saga is None or saga.type != "purchase":
            problems.append(f"provider charge {charge.id}: no purchase saga of ours explains it")
        by_saga[charge.saga_id].append(charge)
    ours = list(session.scalars(select(Refund).where(Refund.provider_refund_id.is_not(None))))
    explained = {refund.provider_refund_id for refund in ours}
    problems += [f"provider refund {r}: no refund of ours explains it" for r in provider_refunds if r not in explained]
    for saga in sagas.values():
        if saga.type == "purchase":
            problems += _purchase(session, saga, by_saga.get(saga.id, []))
        else:
            problems += _return(session, saga, provider_refunds)
    return problems


def _purchase(session: Session, saga: Saga, charges: list[Charge]) -> list[str]:
    if len(charges) > 1:
        return [f"saga {saga.id}: {len(charges)} charges at the provider"]
    net = sum(charge.amount_cents - charge.refunded_cents for charge in charges)
    if saga.status in UNDONE and net != 0:
        return [f"saga {saga.id}: {saga.status} but the provider still holds {net} cents"]
    if saga.status != SagaStatus.COMPLETED:
        return []
    payment = session.scalar(select(Payment).where(Payment.saga_id == saga.id))
    if not charges or payment is None or charges[0].id != payment.provider_ref:
        return [f"saga {saga.id}: COMPLETED but the provider's charge is not the one recorded"]
    returned = sum(
        session.scalars(
            select(Refund.amount_cents).where(
                Refund.payment_id == payment.id, Refund.step == "issue_refund", Refund.status == ISSUED
            )
        )
    )
    if net != payment.amount_cents - returned:
        return [f"saga {saga.id}: the provider nets {net} cents, our records {payment.amount_cents - returned}"]
    return []


def _return(session: Session, saga: Saga, provider_refunds: dict[str, ProviderRefund]) -> list[str]:
    refund = session.scalar(select(Refund).where(Refund.saga_id == saga.id, Refund.step == "issue_refund"))
    at_provider = provider_refunds.get(refund.provider_refund_id or "") if refund is not None else None
    if saga.status == SagaStatus.COMPLETED:
        if refund is None or at_provider is None or at_provider.status not in SETTLED_STATES:
            return [f"saga {saga.id}: COMPLETED return whose refund is not at the provider"]
        if at_provider.amount_cents != refund.amount_cents:
            return [f"saga {saga.id}: refunded {at_provider.amount_cents} at the provider, {refund.amount_cents} here"]
    undone = saga.status in UNDONE
    if undone and at_provider is not None and at_provider.status != "cancelled":
        return [f"saga {saga.id}: {saga.status} return whose refund is {at_provider.status} at the provider"]
    return []
