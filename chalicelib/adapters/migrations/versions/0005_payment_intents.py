"""Payments and refunds at the separate payment provider: a payment is recorded as an intent (PENDING, no charge
id yet) before the provider is asked, and a refund carries the provider's refund id.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("provider_ref", existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("provider_refund_id", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("refunds_provider_refund_id_key", ["provider_refund_id"])


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_constraint("refunds_provider_refund_id_key", type_="unique")
        batch.drop_column("provider_refund_id")
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("provider_ref", existing_type=sa.String(length=64), nullable=False)
