"""SQLAlchemy tables of the shop and of the sagas (docs/design.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb")
"""MySQL's DATETIME keeps whole seconds unless told otherwise; leases are compared to the microsecond."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always reads back timezone-aware in UTC (SQLite and MySQL hand back naive ones)."""

    impl = TIMESTAMP
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UtcDateTime}


def _bucket_sum(column: Any, sku: Any) -> Any:
    return (
        select(func.coalesce(func.sum(column), 0))
        .where(StockBucket.sku == sku)
        .correlate_except(StockBucket)
        .scalar_subquery()
    )


class StockBucket(Base):
    """A share of a product's stock. A reservation draws from one bucket, so the sales of one product lock
    different rows (docs/design.md §4.1); a product with one bucket is the one-row design."""

    __tablename__ = "stock_buckets"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="bucket_on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="bucket_reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="bucket_reserved_within_on_hand"),
    )

    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)


class Product(Base):
    """A product; its stock is the sum of its buckets (read-only here: stock moves through chalicelib.domain.stock)."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents > 0", name="price_positive"),
        CheckConstraint("buckets > 0", name="buckets_positive"),
    )

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    initial_on_hand: Mapped[int] = mapped_column(Integer)
    buckets: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    on_hand: Mapped[int] = column_property(_bucket_sum(StockBucket.on_hand, sku))
    reserved: Mapped[int] = column_property(_bucket_sum(StockBucket.reserved, sku))

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Reservation(Base):
    """Units of a product held for one purchase saga, from one stock bucket: RESERVED, then SOLD or RELEASED."""

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), unique=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    bucket: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The stock bucket the units were drawn from: releasing, selling and restocking them touch that one."""


class Payment(Base):
    """The payment of one purchase saga at the provider: PENDING (the intent, recorded before the provider is
    asked), then CAPTURED (with the provider's charge id) or DECLINED; REFUNDED when the purchase is compensated."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    provider_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The provider's charge id, once it answered."""
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReturnRequestRecord(Base):
    """A return saga's request: REQUESTED, then COMPLETED (restocked) or CLOSED (nothing refunded)."""

    __tablename__ = "returns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Refund(Base):
    """Money given back at the provider against a payment, by one saga step: PENDING (the intent), ISSUED (the
    provider holds it, under `provider_refund_id`), or CANCELLED by cancel_refund."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("saga_id", "step", name="one_refund_per_saga_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"))
    step: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    provider_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)


SEARCHED_COLUMNS = ("type", "status", "customer_id", "order_id", "sku", "failed_step")
"""The saga columns a search filters on, each with an index (type, created_at, id) and so on."""


class Saga(Base):
    """A saga; its version moves with every change, step attempts included (the view cache keys on it)."""

    __tablename__ = "sagas"
    __table_args__ = (
        Index("ix_sagas_created_at_id", "created_at", "id"),
        Index("ix_sagas_caller_idempotency_key", "caller", "idempotency_key", unique=True),
        Index("ix_sagas_status_updated_at", "status", "updated_at"),
        # One per search filter, each ending as the listing's order does, so that a filtered page is read in order
        # from its index (docs/design.md §4.1).
        *(Index(f"ix_sagas_{column}_created_at_id", column, "created_at", "id") for column in SEARCHED_COLUMNS),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    execution_arn: Mapped[str | None] = mapped_column(String(256))
    caller: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """A digest of who started the saga (the IAM principal on AWS); its Idempotency-Key is unique per caller."""
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    input: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    executions: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """How many executions the saga has been given; the current one's name follows from it (service/executions.py)."""
    lease_until: Mapped[datetime | None]
    """Set while one process starts the saga's next execution; others leave the saga alone until then."""
    customer_id: Mapped[str | None] = mapped_column(String(64))
    """The customer of the request, kept beside it so that a search finds the customer's sagas by an index."""
    order_id: Mapped[str | None] = mapped_column(String(64))
    """A return's order, from its request; a purchase's, once confirm_sale created it."""
    sku: Mapped[str | None] = mapped_column(String(64))
    """A purchase's product, from its request; a return's, once validate_return found its order."""
    failed_step: Mapped[str | None] = mapped_column(String(32))
    """The last step whose failure moved the saga: the forward step that sent it to COMPENSATING, then the
    compensation that sent it to FAILED, if one did (docs/design.md §3.1, `step`)."""

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - read once by SQLAlchemy

    def execution_input(self, correlation_id: str | None = None) -> dict[str, Any]:
        """What its state machine starts with; every Task passes `saga_id` and `correlation_id` on to its step."""
        # Only what the Tasks pass on: the request (and its payment token) stays in this row, out of the
        # execution's input and history.
        return {
            "saga_id": self.id,
            "type": self.type,
            "correlation_id": correlation_id or self.correlation_id or self.id,
            # Each Catch records its error under the failed step's name; compensations read what failed here.
            "failures": {},
        }


class AuditEvent(Base):
    """Append-only: one row per step attempt and per saga status change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), index=True)
    step: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    error_type: Mapped[str | None] = mapped_column(String(256))
    error_message: Mapped[str | None] = mapped_column(String(2000))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(64))
    """The Lambda request of the attempt; a timeout or a crash names it in its error."""
    execution: Mapped[str | None] = mapped_column(String(64))
    """The name of the execution the attempt ran in: attempts count from 1 in each. None on a status change, and on
    rows older than revision 0012."""


class Operation(Base):
    """An operator's action on many sagas (a bulk retry, docs/design.md §3.1): the filter as given, who asked, and
    how far a worker has got through the sagas it matched. The counters move one saga at a time, each by an UPDATE of
    its own (`started = started + 1`), so that workers at once never lose a count."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    filter: Mapped[dict[str, Any]]
    caller: Mapped[str] = mapped_column(String(256))
    """The IAM principal API Gateway verified (`local` on `make run` and the command line)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    matched: Mapped[int] = mapped_column(Integer)
    started: Mapped[int] = mapped_column(Integer, default=0)
    """Sagas a worker has taken up."""
    done: Mapped[int] = mapped_column(Integer, default=0)
    """Of them, those whose retry started their next execution."""
    failed: Mapped[int] = mapped_column(Integer, default=0)
    """Of them, those that could not be retried (the reason is on the saga's row of `operation_sagas`)."""
    status: Mapped[str] = mapped_column(String(16))
    """PENDING, RUNNING once a worker took up a saga, DONE once every saga is done or failed."""


class OperationSaga(Base):
    """A saga an operation matched when it was asked for (the snapshot its count came from), and where it stands:
    PENDING, STARTED (a worker took it up), DONE or FAILED (with the reason). Its execution count and ARN at that
    moment tell whether a worker that died with it STARTED had started its next execution."""

    __tablename__ = "operation_sagas"
    # The next saga of an operation in a state is the first of this index's range.
    __table_args__ = (Index("ix_operation_sagas_operation_id_state_saga_id", "operation_id", "state", "saga_id"),)

    operation_id: Mapped[str] = mapped_column(ForeignKey("operations.id"), primary_key=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("sagas.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(500))
    executions: Mapped[int] = mapped_column(Integer)
    execution_arn: Mapped[str | None] = mapped_column(String(256))
    taken_at: Mapped[datetime | None]
    """When a worker took it up."""
