"""How many executions a saga has been given (the current one is named after that number), and the lease that
lets one process at a time start the next (docs/design.md §7.2).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# MySQL's DATETIME keeps whole seconds unless told otherwise; PostgreSQL and SQLite are unchanged.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb")

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("executions", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("sagas", sa.Column("lease_until", TIMESTAMP, nullable=True))
    op.create_index("ix_sagas_status_updated_at", "sagas", ["status", "updated_at"])


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.drop_index("ix_sagas_status_updated_at")
        batch.drop_column("lease_until")
        batch.drop_column("executions")
