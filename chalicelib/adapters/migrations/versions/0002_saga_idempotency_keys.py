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
    op.add_column("sagas", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.add_column("sagas", sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_sagas_idempotency_key", "sagas", ["idempotency_key"], unique=True)
    op.create_index("ix_sagas_created_at_id", "sagas", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_sagas_created_at_id", table_name="sagas")
    op.drop_index("ix_sagas_idempotency_key", table_name="sagas")
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
