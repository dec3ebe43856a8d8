"""What operators search sagas by (docs/design.md §3.1, issue 27): the customer, the order, the product and the step
whose failure moved the saga, as columns, each with an index that ends as the listing's order does
(column, created_at, id). The single-column indexes of type and status give way to such composites.

Existing rows are filled in: the customer, a purchase's product and a return's order from the request, a purchase's
order from its order row, a return's product from its order, and the failed step from the FAILED saga's result (the
compensation that gave up) or the audit log (the last forward step that failed before the saga first moved to
COMPENSATING).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("customer_id", 64), ("order_id", 64), ("sku", 64), ("failed_step", 32))
INDEXED = ("type", "status", "customer_id", "order_id", "sku", "failed_step")

sagas = sa.table(
    "sagas",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("status", sa.String),
    sa.column("input", sa.JSON),
    sa.column("result", sa.JSON),
    *(sa.column(name, sa.String) for name, _ in COLUMNS),
)
orders = sa.table("orders", sa.column("id", sa.String), sa.column("saga_id", sa.String), sa.column("sku", sa.String))
audit = sa.table(
    "audit_log",
    sa.column("id", sa.Integer),
    sa.column("saga_id", sa.String),
    sa.column("step", sa.String),
    sa.column("action", sa.String),
    sa.column("status", sa.String),
    sa.column("error_type", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        for name, length in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    _backfill()
    with op.batch_alter_table("sagas") as batch:
        batch.drop_index("ix_sagas_type")
        batch.drop_index("ix_sagas_status")
        for column in INDEXED:
            batch.create_index(f"ix_sagas_{column}_created_at_id", [column, "created_at", "id"])


def _backfill() -> None:
    op.execute(sagas.update().values(customer_id=sagas.c.input["customer_id"].as_string()))
    op.execute(sagas.update().where(sagas.c.type == "purchase").values(sku=sagas.c.input["sku"].as_string()))
    op.execute(sagas.update().where(sagas.c.type == "return").values(order_id=sagas.c.input["order_id"].as_string()))
    order_of_purchase = sa.select(orders.c.id).where(orders.c.saga_id == sagas.c.id).scalar_subquery()
    op.execute(sagas.update().where(sagas.c.type == "purchase").values(order_id=order_of_purchase))
    sku_of_order = sa.select(orders.c.sku).where(orders.c.id == sagas.c.order_id).scalar_subquery()
    op.execute(sagas.update().where(sagas.c.type == "return").values(sku=sku_of_order))
    op.execute(
        sagas.update()
        .where(sagas.c.status == "FAILED")
        .values(failed_step=sagas.c.result["failed_compensation"].as_string())
    )
    moves = audit.alias("moves")
    first_compensating = (
        sa.select(sa.func.min(moves.c.id))
        .where(moves.c.saga_id == sagas.c.id, moves.c.step == "saga", moves.c.status == "COMPENSATING")
        .correlate(sagas)
        .scalar_subquery()
    )
    # A forward step of a later execution refuses to run (SagaNotRunning) after the saga moved: not the cause.
    last_failed_forward_step = (
        sa.select(audit.c.step)
        .where(
            audit.c.saga_id == sagas.c.id,
            audit.c.action == "execute",
            audit.c.status == "FAILED",
            audit.c.id < first_compensating,
        )
        .order_by(audit.c.id.desc())
        .limit(1)
        .correlate(sagas)
        .scalar_subquery()
    )
    op.execute(
        sagas.update()
        .where(sagas.c.status.in_(("COMPENSATING", "COMPENSATED")))
        .values(failed_step=last_failed_forward_step)
    )


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        for column in INDEXED:
            batch.drop_index(f"ix_sagas_{column}_created_at_id")
        batch.create_index("ix_sagas_type", ["type"])
        batch.create_index("ix_sagas_status", ["status"])
        for name, _ in COLUMNS:
            batch.drop_column(name)
