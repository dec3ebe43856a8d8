"""The ledger's rules: charges, refunds against them, and how refunds settle. No HTTP here.

Every operation runs on a connection inside the caller's transaction, so an idempotency record and the
effect it remembers commit together or not at all.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, func, select
from sqlalchemy.sql import ColumnElement

from payment_provider.commands import ChargeRequest, ListQuery, RefundRequest
from payment_provider.store import charges, refunds
from payment_provider.tokens import FirstAttempts, TokenBehaviour, behaviour_of


class LedgerError(Exception):
    """A business outcome other than success; the message is safe to show (it never holds a token)."""


class CardDeclined(LedgerError):
    pass


class TemporarilyUnavailable(LedgerError):
    pass


class ChargeNotFound(LedgerError):
    pass


class RefundNotFound(LedgerError):
    pass


class RefundExceedsCharge(LedgerError):
    pass


class RefundAlreadySettled(LedgerError):
    pass


class UnknownCursor(LedgerError):
    pass


@dataclass(frozen=True)
class Charge:
    id: str
    saga_id: str
    amount_cents: int
    currency: str
    status: str
    refunded_cents: int
    created_at_ms: int


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int
    currency: str
    status: str
    """`pending`, `settled` or `cancelled`."""
    created_at_ms: int
    settles_at_ms: int


@dataclass(frozen=True)
class Page:
    items: Sequence[Charge] | Sequence[Refund]
    has_more: bool


class Ledger:
    """Charges and refunds; refunds settle `refund_settle_seconds` after they are made. A charge shows in the search
    by saga (`list_charges` with `saga_id`) only `listing_lag_seconds` after it committed, as Stripe's search lags
    its writes; reads by id and the unfiltered listing are consistent."""

    def __init__(
        self, refund_settle_seconds: float, clock: Callable[[], float] = time.time, listing_lag_seconds: float = 0.0
    ) -> None:
        self._settle_ms = round(refund_settle_seconds * 1000)
        self._lag_ms = round(listing_lag_seconds * 1000)
        self._clock = clock
        self._flaky_attempts = FirstAttempts()

    def capture(self, connection: Connection, request: ChargeRequest, attempt_key: Hashable) -> Charge:
        """Charge the card; `attempt_key` tells a flaky card's first request for an idempotency key from its retry."""
        behaviour = behaviour_of(request.payment_token)
        if behaviour is TokenBehaviour.UNKNOWN:
            raise CardDeclined("unknown payment token")
        if behaviour is TokenBehaviour.DECLINES:
            raise CardDeclined("the card was declined")
        if behaviour is TokenBehaviour.FLAKY and self._flaky_attempts.is_first(attempt_key):
            raise TemporarilyUnavailable("the card network timed out; retry with the same Idempotency-Key")
        charge_id = f"ch_{secrets.token_hex(12)}"
        connection.execute(
            charges.insert().values(
                id=charge_id,
                saga_id=request.saga_id,
                amount_cents=request.amount_cents,
                currency=request.currency,
                status="succeeded",
                created_at_ms=self._now_ms(),
            )
        )
        return self._charge(connection, charge_id)

    def refund(self, connection: Connection, request: RefundRequest) -> Refund:
        """Refund part or all of a charge; refunds not cancelled never add up to more than the charge."""
        charge = connection.execute(
            select(charges).where(charges.c.id == request.charge_id).with_for_update()
        ).one_or_none()
        if charge is None:
            raise ChargeNotFound(f"no charge {request.charge_id}")
        already = connection.execute(_refunded_total(charge.id)).scalar_one()
        if already + request.amount_cents > charge.amount_cents:
            left = charge.amount_cents - already
            raise RefundExceedsCharge(
                f"amount_cents: {request.amount_cents} exceeds the {left} cents left to refund on {charge.id}"
            )
        now = self._now_ms()
        refund_id = f"re_{secrets.token_hex(12)}"
        connection.execute(
            refunds.insert().values(
                id=refund_id,
                charge_id=charge.id,
                amount_cents=request.amount_cents,
                status="pending",
                created_at_ms=now,
                settles_at_ms=now + self._settle_ms,
            )
        )
        return self._refund(connection, refund_id)

    def cancel_refund(self, connection: Connection, refund_id: str) -> Refund:
        """Cancel a pending refund; cancelling a cancelled one changes nothing, a settled one cannot be."""
        current = self._refund(connection, refund_id, lock=True)
        if current.status == "settled":
            raise RefundAlreadySettled(f"refund {refund_id} has settled and can no longer be cancelled")
        if current.status == "pending":
            connection.execute(
                refunds.update()
                .where(refunds.c.id == refund_id)
                .values(status="cancelled", cancelled_at_ms=self._now_ms())
            )
        return self._refund(connection, refund_id)

    def charge(self, connection: Connection, charge_id: str) -> Charge:
        """The charge `charge_id`, with what has been refunded of it."""
        return self._charge(connection, charge_id)

    def get_refund(self, connection: Connection, refund_id: str) -> Refund:
        """The refund `refund_id`, its status as of now."""
        return self._refund(connection, refund_id)

    def list_charges(self, connection: Connection, query: ListQuery) -> Page:
        """Charges oldest first, of one saga when `query.saga_id` is set, a page after `query.starting_after`."""
        statement = _charges_select()
        if query.saga_id is not None:
            searchable = charges.c.created_at_ms <= self._now_ms() - self._lag_ms
            statement = statement.where(charges.c.saga_id == query.saga_id, searchable)
        if query.starting_after is not None:
            statement = statement.where(charges.c.seq > _cursor_seq(connection, charges.c, query.starting_after))
        rows = connection.execute(statement.order_by(charges.c.seq).limit(query.limit + 1)).mappings().all()
        return Page([_to_charge(row) for row in rows[: query.limit]], has_more=len(rows) > query.limit)

    def list_refunds(self, connection: Connection, query: ListQuery) -> Page:
        """Refunds oldest first, of one charge when `query.charge_id` is set, a page after `query.starting_after`."""
        statement = _refunds_select()
        if query.charge_id is not None:
            statement = statement.where(refunds.c.charge_id == query.charge_id)
        if query.starting_after is not None:
            statement = statement.where(refunds.c.seq > _cursor_seq(connection, refunds.c, query.starting_after))
        rows = connection.execute(statement.order_by(refunds.c.seq).limit(query.limit + 1)).mappings().all()
        now = self._now_ms()
        return Page([_to_refund(row, now) for row in rows[: query.limit]], has_more=len(rows) > query.limit)

    def _charge(self, connection: Connection, charge_id: str) -> Charge:
        row = connection.execute(_charges_select().where(charges.c.id == charge_id)).mappings().one_or_none()
        if row is None:
            raise ChargeNotFound(f"no charge {charge_id}")
        return _to_charge(row)

    def _refund(self, connection: Connection, refund_id: str, lock: bool = False) -> Refund:
        statement = _refunds_select().where(refunds.c.id == refund_id)
        row = connection.execute(statement.with_for_update() if lock else statement).mappings().one_or_none()
        if row is None:
            raise RefundNotFound(f"no refund {refund_id}")
        return _to_refund(row, self._now_ms())

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)


def _refunded_total(charge_id: str | ColumnElement[str]) -> Select[int]:
    """What is refunded (pending or settled, not cancelled) of the charge `charge_id`."""
    return select(func.coalesce(func.sum(refunds.c.amount_cents), 0)).where(
        refunds.c.charge_id == charge_id, refunds.c.status != "cancelled"
    )


def _charges_select() -> Select[Any]:
    refunded = _refunded_total(charges.c.id).scalar_subquery().label("refunded_cents")
    return select(charges, refunded)


def _refunds_select() -> Select[Any]:
    return select(refunds, charges.c.currency).join(charges, refunds.c.charge_id == charges.c.id)


def _cursor_seq(connection: Connection, table_columns: Any, object_id: str) -> int:
    seq = connection.execute(select(table_columns.seq).where(table_columns.id == object_id)).scalar_one_or_none()
    if seq is None:
        raise UnknownCursor(f"starting_after: no object {object_id}")
    return int(seq)


def _to_charge(row: RowMapping) -> Charge:
    return Charge(
        id=row["id"],
        saga_id=row["saga_id"],
        amount_cents=int(row["amount_cents"]),
        currency=row["currency"],
        status=row["status"],
        refunded_cents=int(row["refunded_cents"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def _to_refund(row: RowMapping, now_ms: int) -> Refund:
    settles_at_ms = int(row["settles_at_ms"])
    status = row["status"]
    if status == "pending" and now_ms >= settles_at_ms:
        status = "settled"
    return Refund(
        id=row["id"],
        charge_id=row["charge_id"],
        amount_cents=int(row["amount_cents"]),
        currency=row["currency"],
        status=status,
        created_at_ms=int(row["created_at_ms"]),
        settles_at_ms=settles_at_ms,
    )
