"""Return saga: validate the return, refund the money, put the goods back; and the compensation.

Each step is idempotent on the saga: run again, it finds its own earlier effect and returns the same result.
The refund lives at the payment provider: issue_refund records its intent (PENDING) before asking, and
cancel_refund cancels it there; a refund that has settled cannot be, and the saga then needs an operator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chalicelib.adapters.tables import Order, Payment, Refund, Reservation, ReturnRequestRecord, Saga
from chalicelib.domain import payments, stock
from chalicelib.domain.contracts import ReturnRequest
from chalicelib.domain.errors import PaymentOutcomeUnknown, ReturnRejected, StepOutOfOrder
from chalicelib.domain.purchase import CANCELLED, CONFIRMED, ISSUED, PENDING
from chalicelib.settings import get_settings

REQUESTED, COMPLETED, CLOSED = "REQUESTED", "COMPLETED", "CLOSED"


def validate_return(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Open the return request if the order allows it; the order row is locked while counting."""
    record = _return_record(session, saga.id)
    if record is None:
        request = _request(saga)
        order = session.scalar(select(Order).where(Order.id == request.order_id).with_for_update())
        # Another customer's order is answered as an unknown one: the answer tells nobody whose orders exist.
        if order is None or order.customer_id != request.customer_id:
            raise ReturnRejected(f"customer {request.customer_id!r} has no order {request.order_id!r}")
        if order.status != CONFIRMED:
            raise ReturnRejected(f"order {order.id} is {order.status}, not CONFIRMED")
        if order.created_at + timedelta(days=get_settings().return_window_days) < datetime.now(UTC):
            raise ReturnRejected(f"order {order.id} is outside the {get_settings().return_window_days}-day window")
        returnable = order.quantity - _returned_or_pending(session, order.id)
        if request.quantity > returnable:
            raise ReturnRejected(f"{request.quantity} asked, {returnable} of {order.quantity} still returnable")
        record = ReturnRequestRecord(
            saga_id=saga.id, order_id=order.id, quantity=request.quantity, reason=request.reason, status=REQUESTED
        )
        session.add(record)
        saga.sku = order.sku
        session.flush()
    return {"return_id": record.id, "order_id": record.order_id, "quantity": record.quantity}


def _request(saga: Saga) -> ReturnRequest:
    """The return's request; one recorded before returns named their customer is refused, never let through."""
    try:
        return ReturnRequest.model_validate(saga.input)
    except ValidationError as error:
        fields = ", ".join(".".join(str(part) for part in problem["loc"]) for problem in error.errors())
        raise ReturnRejected(f"the return request lacks or has invalid: {fields}") from None


def issue_refund(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Refund quantity x unit price at the provider against the order's charge: the intent first."""
    refund = _refund(session, saga.id)
    if refund is None:
        record = _return_record(session, saga.id)
        if record is None or record.status != REQUESTED:
            raise StepOutOfOrder("issue_refund needs an open return request")
        order = session.get_one(Order, record.order_id)
        refund = Refund(
            saga_id=saga.id,
            step="issue_refund",
            payment_id=order.payment_id,
            amount_cents=record.quantity * order.unit_price_cents,
            status=PENDING,
        )
        session.add(refund)
        session.flush()
    if refund.status == PENDING:
        refund.provider_refund_id = _refund_at_provider(session, saga, refund)
        refund.status = ISSUED
    elif refund.status != ISSUED:
        raise StepOutOfOrder(f"issue_refund on a {refund.status} refund")
    return {"refund_id": refund.id, "amount_cents": refund.amount_cents}


def update_stock(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Put the returned units back on hand and close the return as completed."""
    record = _return_record(session, saga.id)
    if record is None:
        raise StepOutOfOrder("update_stock needs a return request")
    order = session.get_one(Order, record.order_id)
    if record.status == REQUESTED:
        record.status = COMPLETED
        refund = _refund(session, saga.id)
        bucket = _bucket_of(session, order)
        session.flush()  # not the saga: its version moves once per attempt, at commit
        stock.put_back(session, order.sku, bucket, record.quantity)
        saga.result = {"return_id": record.id, "refund_cents": refund.amount_cents if refund else 0}
    elif record.status != COMPLETED:
        raise StepOutOfOrder(f"update_stock on a {record.status} return")
    return {"sku": order.sku, "restocked": record.quantity}


def cancel_refund(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Cancel the refund at the provider, if one was issued, and close the return request unrefunded."""
    refund = _refund(session, saga.id)
    if refund is not None and refund.status != CANCELLED:
        # An issue_refund whose answer was lost left no refund id: asking again with its key tells it (and, if
        # that refund never reached the provider, makes it, to be cancelled at once: the ledger nets to zero).
        refund_id = refund.provider_refund_id or _refund_at_provider(session, saga, refund)
        session.commit()
        payments.cancel_refund(refund_id)
        refund.provider_refund_id, refund.status = refund_id, CANCELLED
    record = _return_record(session, saga.id)
    if record is not None and record.status != CLOSED:
        if record.status == COMPLETED:
            order = session.get_one(Order, record.order_id)
            saga.result = {}
            stock.take_back(session, order.sku, _bucket_of(session, order), record.quantity)
        record.status = CLOSED
    return {"cancelled_cents": refund.amount_cents if refund else 0}


def _refund_at_provider(session: Session, saga: Saga, refund: Refund) -> str:
    """The provider's id of this return's refund, asked for with issue_refund's key (the intent is committed
    first, so no transaction is held across the call). Past the key's lifetime the provider would take the same key
    for a new refund, and nothing it keeps consistent says whether the first was made: an operator decides."""
    charge_id = session.get_one(Payment, refund.payment_id).provider_ref
    session.commit()
    if payments.key_expired(refund.created_at):
        raise PaymentOutcomeUnknown(
            f"the provider no longer remembers issue_refund's key; whether refund {refund.id} was made is unknown"
        )
    return payments.refund(str(charge_id), refund.amount_cents, saga.id, "issue_refund").id


def _returned_or_pending(session: Session, order_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(ReturnRequestRecord.quantity), 0)).where(
            ReturnRequestRecord.order_id == order_id, ReturnRequestRecord.status.in_((REQUESTED, COMPLETED))
        )
    )
    return int(total or 0)


def _return_record(session: Session, saga_id: str) -> ReturnRequestRecord | None:
    return session.scalar(select(ReturnRequestRecord).where(ReturnRequestRecord.saga_id == saga_id))


def _refund(session: Session, saga_id: str) -> Refund | None:
    return session.scalar(select(Refund).where(Refund.saga_id == saga_id, Refund.step == "issue_refund"))


def _bucket_of(session: Session, order: Order) -> int:
    """The stock bucket the order's units were drawn from, where returned units go back."""
    return session.scalar(select(Reservation.bucket).where(Reservation.saga_id == order.saga_id)) or 0
