"""A product's stock moves into buckets (docs/design.md §4.1, issue 28): a reservation draws from one of them, so
concurrent sales of one product lock different rows.

Each product's stock is split into 16 buckets: the units held by existing reservations stay in bucket 0 (where those
reservations now say they were drawn from), the available units are spread evenly. A product shows the same on hand,
reserved and available as before, summed over its buckets. The downgrade sums them back into the product's row.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = 16
PRODUCT_CHECKS = (
    ("on_hand_not_negative", "on_hand >= 0"),
    ("reserved_not_negative", "reserved >= 0"),
    ("reserved_within_on_hand", "reserved <= on_hand"),
)

products = sa.table(
    "products",
    sa.column("sku", sa.String),
    sa.column("on_hand", sa.Integer),
    sa.column("reserved", sa.Integer),
    sa.column("buckets", sa.Integer),
)
stock_buckets = sa.table(
    "stock_buckets",
    sa.column("sku", sa.String),
    sa.column("bucket", sa.Integer),
    sa.column("on_hand", sa.Integer),
    sa.column("reserved", sa.Integer),
)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "stock_buckets",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.CheckConstraint("on_hand >= 0", name="bucket_on_hand_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="bucket_reserved_not_negative"),
        sa.CheckConstraint("reserved <= on_hand", name="bucket_reserved_within_on_hand"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("sku", "bucket"),
        **_mysql_table(bind),
    )
    rows = []
    for sku, on_hand, reserved in bind.execute(sa.select(products.c.sku, products.c.on_hand, products.c.reserved)):
        share, rest = divmod(on_hand - reserved, BUCKETS)
        for bucket in range(BUCKETS):
            units = share + (bucket < rest)
            held = reserved if bucket == 0 else 0
            rows.append({"sku": sku, "bucket": bucket, "on_hand": units + held, "reserved": held})
    if rows:
        op.bulk_insert(stock_buckets, rows)
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("bucket", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("products") as batch:
        for name, _ in PRODUCT_CHECKS:
            batch.drop_constraint(name, type_="check")
        batch.drop_column("on_hand")
        batch.drop_column("reserved")
        batch.add_column(sa.Column("buckets", sa.Integer(), nullable=False, server_default=str(BUCKETS)))
        batch.create_check_constraint("buckets_positive", "buckets > 0")
    with op.batch_alter_table("products") as batch:
        batch.alter_column("buckets", server_default="1", existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_constraint("buckets_positive", type_="check")
        batch.drop_column("buckets")
        batch.add_column(sa.Column("on_hand", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved", sa.Integer(), nullable=False, server_default="0"))
    summed = {
        column: sa.select(sa.func.coalesce(sa.func.sum(stock_buckets.c[column]), 0))
        .where(stock_buckets.c.sku == products.c.sku)
        .scalar_subquery()
        for column in ("on_hand", "reserved")
    }
    op.execute(products.update().values(**summed))
    with op.batch_alter_table("products") as batch:
        for column in ("on_hand", "reserved"):
            batch.alter_column(column, server_default=None, existing_type=sa.Integer(), existing_nullable=False)
        for name, condition in PRODUCT_CHECKS:
            batch.create_check_constraint(name, condition)
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("bucket")
    op.drop_table("stock_buckets")


def _mysql_table(bind: sa.engine.Connection) -> dict[str, str]:
    """The binary NO PAD collation of revision 0008, named (as in revision 0010)."""
    if bind.dialect.name not in ("mysql", "mariadb"):
        return {}
    collation = "utf8mb4_nopad_bin" if getattr(bind.dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}
