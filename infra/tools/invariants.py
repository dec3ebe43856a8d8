"""The invariants of docs/design.md §4, checked against the database and the payment provider's ledger; each
violation is named."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chalicelib.adapters.payment_provider import PaymentProviderClient
from chalicelib.adapters.tables import (
    AuditEvent,
    Order,
    Payment,
    Product,
    Refund,
    Reservation,
    ReturnRequestRecord,
    Saga,
    StockBucket,
)
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import THROTTLED, UNDONE, SagaStatus, step_of_state
from chalicelib.domain.purchase import CAPTURED, CONFIRMED, ISSUED, RELEASED, RESERVED
from chalicelib.domain.returns import CLOSED, COMPLETED
from infra.tools import ledger


def violations(session: Session, provider: PaymentProviderClient | None = None) -> list[str]:
    """Every broken invariant, as a sentence; empty when the data is consistent. With `provider`, its ledger
    too: what it holds per saga matches our records, and it holds nothing they do not explain."""
    return [
        *_stock_conserved(session),
        *_money_conserved(session),
        *_outcomes_match_effects(session),
        *_completed_or_cancelled(session),
        *(ledger.violations(session, provider) if provider is not None else []),
    ]


RECORDS_FAILURE = "CompensationFailed"
"""The Task that records a saga FAILED: no step of the saga, so not in the audit log's steps."""


def unaudited_attempts(session: Session, saga_id: str, histories: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """Invariant 7 against Step Functions' own record: every Task attempt of each of the saga's executions (each
    `TaskScheduled`, one that Lambda throttled included) has its row in the audit log, under that execution's name
    (`histories`: each execution's history by its name)."""
    ran: Counter[tuple[str, str]] = Counter()
    throttled: Counter[tuple[str, str]] = Counter()
    outcomes: dict[tuple[str, str], list[str]] = {}
    for execution, history in histories.items():
        state = None
        for event in history:
            if event["type"].endswith("StateEntered"):
                state = event["stateEnteredEventDetails"]["name"]
            elif state is None or state == RECORDS_FAILURE:
                continue
            elif event["type"] == "TaskScheduled":
                ran[(execution, step_of_state(state))] += 1
            elif event["type"] in ("TaskSucceeded", "TaskFailed", "TaskTimedOut"):
                details = event.get("taskFailedEventDetails") or event.get("taskTimedOutEventDetails") or {}
                error = details.get("error")
                key = (execution, step_of_state(state))
                outcomes.setdefault(key, []).append(error or "succeeded")
                throttled[key] += error == THROTTLED
    rows = session.execute(
        select(AuditEvent.execution, AuditEvent.step, AuditEvent.attempt, AuditEvent.error_type)
        .where(AuditEvent.saga_id == saga_id, AuditEvent.step.in_({step for _, step in ran}))
        .order_by(AuditEvent.id)
    ).all()
    logged: dict[tuple[str | None, str], list[str]] = {}
    for ran_in, step, attempt, error_type in rows:
        logged.setdefault((ran_in, step), []).append(f"attempt {attempt} {error_type or 'succeeded'}")
    problems = []
    for (execution, step), attempts in ran.items():
        held = logged.get((execution, step), [])
        if len(held) < attempts:
            problems.append(
                f"saga {saga_id}: {step} ran {attempts} time(s) in execution {execution} "
                f"({throttled[(execution, step)]} throttled), audited {len(held)}; Step Functions saw "
                f"{', '.join(outcomes.get((execution, step), []))}; the log holds {', '.join(held) or 'nothing'}"
            )
    return problems


def _stock_conserved(session: Session) -> list[str]:
    sold = _sum_by(session, Order.sku, Order.quantity, Order.status == CONFIRMED)
    restocked = _sum_by(
        session,
        Order.sku,
        ReturnRequestRecord.quantity,
        ReturnRequestRecord.status == COMPLETED,
        join=(ReturnRequestRecord, ReturnRequestRecord.order_id == Order.id),
    )
    held = _sum_by(session, Reservation.sku, Reservation.quantity, Reservation.status == RESERVED)
    problems = []
    for product in session.scalars(select(Product)):
        expected = product.on_hand + sold[product.sku] - restocked[product.sku]
        if product.initial_on_hand != expected:
            problems.append(
                f"{product.sku}: stock not conserved: initial {product.initial_on_hand} != on_hand {product.on_hand}"
                f" + sold {sold[product.sku]} - restocked {restocked[product.sku]}"
            )
        if product.reserved != held[product.sku]:
            problems.append(f"{product.sku}: reserved {product.reserved} != held reservations {held[product.sku]}")
    return problems + _buckets_consistent(session)


def _buckets_consistent(session: Session) -> list[str]:
    """Invariant 2 holds in each bucket, and each bucket's reserved is what the reservations drawn from it hold."""
    held = Counter(
        {
            (sku, bucket): int(units)
            for sku, bucket, units in session.execute(
                select(Reservation.sku, Reservation.bucket, func.sum(Reservation.quantity))
                .where(Reservation.status == RESERVED)
                .group_by(Reservation.sku, Reservation.bucket)
            )
        }
    )
    counts = {sku: int(count) for sku, count in session.execute(select(Product.sku, Product.buckets))}
    problems = []
    seen: Counter[str] = Counter()
    for row in session.scalars(select(StockBucket)):
        seen[row.sku] += 1
        name = f"{row.sku} bucket {row.bucket}"
        if not 0 <= row.reserved <= row.on_hand:
            problems.append(f"{name}: reserved {row.reserved} outside 0..on_hand {row.on_hand}")
        if row.reserved != held[(row.sku, row.bucket)]:
            problems.append(f"{name}: reserved {row.reserved} != held reservations {held[(row.sku, row.bucket)]}")
        if not 0 <= row.bucket < counts.get(row.sku, 0):
            problems.append(f"{name}: outside the product's {counts.get(row.sku, 0)} buckets")
    problems += [
        f"{sku}: {seen[sku]} bucket rows, {count} expected" for sku, count in counts.items() if seen[sku] != count
    ]
    return problems


def _money_conserved(session: Session) -> list[str]:
    problems = []
    issued = _sum_by(session, Refund.payment_id, Refund.amount_cents, Refund.status == ISSUED)
    for payment in session.scalars(select(Payment)):
        if issued[payment.id] > payment.amount_cents:
            problems.append(f"payment {payment.id}: refunded {issued[payment.id]} > captured {payment.amount_cents}")
    full_refunds = Counter(
        session.scalars(select(Refund.payment_id).where(Refund.step == "refund_payment", Refund.status == ISSUED))
    )
    for payment_id, count in full_refunds.items():
        if count > 1:
            problems.append(f"payment {payment_id}: refunded {count} times")
    return problems


def _outcomes_match_effects(session: Session) -> list[str]:
    problems = []
    for saga in session.scalars(select(Saga)):
        if saga.type == "purchase":
            problems += _purchase_effects(session, saga)
        else:
            problems += _return_effects(session, saga)
    return problems


def _purchase_effects(session: Session, saga: Saga) -> list[str]:
    orders = list(session.scalars(select(Order).where(Order.saga_id == saga.id, Order.status == CONFIRMED)))
    payment = session.scalar(select(Payment).where(Payment.saga_id == saga.id))
    reservation = session.scalar(select(Reservation).where(Reservation.saga_id == saga.id))
    problems = []
    if saga.status == SagaStatus.COMPLETED:
        if len(orders) != 1 or payment is None or payment.status != CAPTURED:
            problems.append(f"saga {saga.id}: COMPLETED without exactly one confirmed order and one captured payment")
        elif saga.result.get("order_id") != orders[0].id:
            problems.append(f"saga {saga.id}: result does not name its order")
    elif saga.status in UNDONE:
        left = []
        if orders:
            left.append("a confirmed order")
        if payment is not None and payment.status == CAPTURED:
            left.append("a captured payment")
        if reservation is not None and reservation.status != RELEASED:
            left.append(f"a {reservation.status} reservation")
        if left:
            problems.append(f"saga {saga.id}: {saga.status} but left {', '.join(left)}")
    return problems


def _return_effects(session: Session, saga: Saga) -> list[str]:
    record = session.scalar(select(ReturnRequestRecord).where(ReturnRequestRecord.saga_id == saga.id))
    refund = session.scalar(select(Refund).where(Refund.saga_id == saga.id, Refund.step == "issue_refund"))
    problems = []
    if saga.status == SagaStatus.COMPLETED:
        if record is None or record.status != COMPLETED or refund is None or refund.status != ISSUED:
            problems.append(f"saga {saga.id}: COMPLETED return without an issued refund and a restock")
    elif saga.status in UNDONE:
        if refund is not None and refund.status == ISSUED:
            problems.append(f"saga {saga.id}: {saga.status} but its refund is still issued")
        if record is not None and record.status != CLOSED:
            problems.append(f"saga {saga.id}: {saga.status} but its return request is {record.status}")
    return problems


def _completed_or_cancelled(session: Session) -> list[str]:
    """A cancel and the last forward step race: one of them wins, so no saga's history holds both outcomes."""
    both = (
        select(AuditEvent.saga_id)
        .where(
            AuditEvent.step == saga_log.SAGA_EVENT,
            AuditEvent.status.in_((SagaStatus.COMPLETED, SagaStatus.CANCELLED)),
        )
        .group_by(AuditEvent.saga_id)
        .having(func.count(func.distinct(AuditEvent.status)) > 1)
    )
    return [f"saga {saga_id}: both COMPLETED and CANCELLED" for saga_id in session.scalars(both)]


def _sum_by(session: Session, key: Any, amount: Any, *where: Any, join: tuple[Any, Any] | None = None) -> Counter[Any]:
    query = select(key, func.sum(amount)).where(*where).group_by(key)
    if join is not None:
        query = query.join(*join)
    return Counter({k: int(v) for k, v in session.execute(query)})
