"""Idempotency keys of the requests that started sagas, and an index for listing sagas newest first.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_sagas_idempotency_key", ["idempotency_key"])
        batch.create_index("ix_sagas_created_at_id", ["created_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.drop_index("ix_sagas_created_at_id")
        batch.drop_constraint("uq_sagas_idempotency_key", type_="unique")
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
