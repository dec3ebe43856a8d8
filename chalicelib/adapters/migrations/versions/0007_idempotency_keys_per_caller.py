"""Idempotency keys scoped to the caller: one key per (caller, key), so two callers' keys never meet.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before this revision belong to no caller: '' keeps them out of every caller's keys.
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(sa.Column("caller", sa.String(length=64), nullable=False, server_default=""))
        batch.drop_index("ix_sagas_idempotency_key")
        batch.create_index("ix_sagas_caller_idempotency_key", ["caller", "idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.drop_index("ix_sagas_caller_idempotency_key")
        batch.create_index("ix_sagas_idempotency_key", ["idempotency_key"], unique=True)
        batch.drop_column("caller")
