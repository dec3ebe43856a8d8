"""Purchase saga: reserve stock, take payment, confirm the sale; and the compensations that undo them.

Each step is idempotent on the saga: run again, it finds its own earlier effect and returns the same result.
The money lives at the payment provider, a service of its own: a step that asks it first commits its intent
(`session.commit()`), so that no transaction is held open across the call and an answer lost on the way is
found again by asking with the same key (docs/design.md §8).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chalicelib.adapters.payment_provider import Charge
from chalicelib.adapters.tables import Order, Payment, Product, Refund, Reservation, Saga
from chalicelib.domain import payments, stock
from chalicelib.domain.contracts import PurchaseRequest
from chalicelib.domain.errors import OutOfStock, PaymentDeclined, StepOutOfOrder, UnknownProduct

RESERVED, SOLD, RELEASED = "RESERVED", "SOLD", "RELEASED"
PENDING, CAPTURED, DECLINED, REFUNDED = "PENDING", "CAPTURED", "DECLINED", "REFUNDED"
CONFIRMED, CANCELLED = "CONFIRMED", "CANCELLED"
ISSUED = "ISSUED"


def reserve_stock(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Hold the units atomically in one stock bucket: its update only matches while enough are available there."""
    request = PurchaseRequest.model_validate(saga.input)
    reservation = _reservation(session, saga.id)
    if reservation is None:
        product = session.execute(
            select(Product.price_cents, Product.buckets).where(Product.sku == request.sku)
        ).first()
        if product is None:
            raise UnknownProduct(f"no product with sku {request.sku!r}")
        # The contended UPDATE comes last, so its bucket stays locked for the shortest time.
        reservation = Reservation(
            saga_id=saga.id,
            sku=request.sku,
            quantity=request.quantity,
            unit_price_cents=product.price_cents,
            status=RESERVED,
            bucket=stock.first_bucket(product.buckets),
        )
        session.add(reservation)
        session.flush()
        bucket = stock.reserve(session, request.sku, request.quantity, reservation.bucket)
        if bucket is None:
            available = stock.available(session, request.sku)
            raise OutOfStock(f"{request.sku}: {available} available, {request.quantity} asked")
        reservation.bucket = bucket
    return {
        "reservation_id": reservation.id,
        "sku": reservation.sku,
        "quantity": reservation.quantity,
        "amount_cents": reservation.quantity * reservation.unit_price_cents,
    }


def process_payment(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Charge quantity x price: the intent (PENDING) first, then the provider, then the outcome."""
    request = PurchaseRequest.model_validate(saga.input)
    payment = _payment(session, saga.id)
    if payment is None:
        reservation = _reservation(session, saga.id)
        if reservation is None or reservation.status != RESERVED:
            raise StepOutOfOrder("process_payment needs a held reservation")
        payment = Payment(
            saga_id=saga.id,
            customer_id=request.customer_id,
            amount_cents=reservation.quantity * reservation.unit_price_cents,
            status=PENDING,
        )
        session.add(payment)
    if payment.status == DECLINED:
        raise PaymentDeclined("the card was declined")
    if payment.status == PENDING:
        session.commit()
        try:
            charge = payments.charge(saga.id, request.payment_token, payment.amount_cents, payment.created_at)
        except PaymentDeclined:
            payment.status = DECLINED
            session.commit()
            raise
        payment.provider_ref, payment.status = charge.id, CAPTURED
        session.flush()
    return {"payment_id": payment.id, "amount_cents": payment.amount_cents, "provider_ref": payment.provider_ref}


def confirm_sale(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Turn the reservation into a sale: the units leave stock and the order is confirmed."""
    order = session.scalar(select(Order).where(Order.saga_id == saga.id))
    if order is None:
        reservation = _reservation(session, saga.id)
        payment = _payment(session, saga.id)
        if reservation is None or reservation.status != RESERVED or payment is None or payment.status != CAPTURED:
            raise StepOutOfOrder("confirm_sale needs a held reservation and a captured payment")
        reservation.status = SOLD
        order = Order(
            id=uuid.uuid4().hex,
            saga_id=saga.id,
            customer_id=payment.customer_id,
            sku=reservation.sku,
            quantity=reservation.quantity,
            unit_price_cents=reservation.unit_price_cents,
            payment_id=payment.id,
            status=CONFIRMED,
        )
        session.add(order)
        session.flush()  # not the saga: its version moves once per attempt, at commit
        stock.sell(session, reservation.sku, reservation.bucket, reservation.quantity)
        saga.result = {"order_id": order.id}
        saga.order_id = order.id
    return {"order_id": order.id}


def refund_payment(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Give back what the provider holds for the saga, whatever our rows say, learned from what the provider keeps
    consistent (a charge whose answer was lost has no charge id here); nothing when no charge was made."""
    refund = session.scalar(select(Refund).where(Refund.saga_id == saga.id, Refund.step == "refund_payment"))
    if refund is None:
        payment = _payment(session, saga.id)
        charge = _charge_held(session, saga, payment)
        if charge is None or payment is None:
            return {"refunded_cents": 0}
        payment.provider_ref = charge.id
        refund = Refund(
            saga_id=saga.id,
            step="refund_payment",
            payment_id=payment.id,
            amount_cents=charge.amount_cents - charge.refunded_cents,
            status=PENDING,
        )
        session.add(refund)
        session.flush()
    if refund.status == PENDING:
        payment = session.get_one(Payment, refund.payment_id)
        session.commit()
        if refund.amount_cents > 0:
            refund.provider_refund_id = _refund_the_rest(str(payment.provider_ref), refund, saga.id)
        refund.status, payment.status = ISSUED, REFUNDED
        session.flush()
    return {"refunded_cents": refund.amount_cents}


def _charge_held(session: Session, saga: Saga, payment: Payment | None) -> Charge | None:
    """The charge the provider holds for the saga. Its intent is committed before a charge is asked for, so without
    one (or with a decline) none was made; with its id, a read by id; else the provider is asked again with the
    charge's key, never read from the search by saga, which lags."""
    if payment is None or payment.status == DECLINED:
        return None
    if payment.provider_ref:
        return payments.charge_by_id(payment.provider_ref)
    request = PurchaseRequest.model_validate(saga.input)
    session.commit()
    try:
        return payments.charge_held(saga.id, request.payment_token, payment.amount_cents, payment.created_at)
    except PaymentDeclined:
        payment.status = DECLINED
        return None


def _refund_the_rest(charge_id: str, refund: Refund, saga_id: str) -> str:
    """The provider's id of this compensation's refund. Past the key's lifetime a repeat would refund anew, so the
    charge's refunds are listed first (consistently): a compensated purchase's charge has no refund but ours."""
    if payments.key_expired(refund.created_at):
        made = [r for r in payments.refunds_of(charge_id) if r.status != "cancelled"]
        if made:
            return made[0].id
    return payments.refund(charge_id, refund.amount_cents, saga_id, "refund_payment").id


def release_stock(session: Session, saga: Saga, attempt: int) -> dict[str, Any]:
    """Give the held units back; a sale confirmed before a late failure is cancelled too."""
    reservation = _reservation(session, saga.id)
    if reservation is None:
        return {"released": 0}
    if reservation.status == RESERVED:
        stock.release(session, reservation.sku, reservation.bucket, reservation.quantity)
    elif reservation.status == SOLD:
        session.execute(update(Order).where(Order.saga_id == saga.id).values(status=CANCELLED))
        saga.result = {}
        stock.put_back(session, reservation.sku, reservation.bucket, reservation.quantity)
    reservation.status = RELEASED
    return {"released": reservation.quantity}


def _reservation(session: Session, saga_id: str) -> Reservation | None:
    return session.scalar(select(Reservation).where(Reservation.saga_id == saga_id))


def _payment(session: Session, saga_id: str) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.saga_id == saga_id))
