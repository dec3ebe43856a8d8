"""Operators' actions on many sagas (docs/design.md §3.1, issue 27): an operation (a bulk retry) with its filter,
caller and counters, and the sagas it matched when it was asked for, each with where the worker stands with it.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# MySQL's DATETIME keeps whole seconds unless told otherwise; PostgreSQL and SQLite are unchanged.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb")

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("caller", sa.String(length=256), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operations_status_created_at", "operations", ["status", "created_at"])
    op.create_table(
        "operation_sagas",
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("saga_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("executions", sa.Integer(), nullable=False),
        sa.Column("execution_arn", sa.String(length=256), nullable=True),
        sa.Column("taken_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["operation_id"], ["operations.id"]),
        sa.ForeignKeyConstraint(["saga_id"], ["sagas.id"]),
        sa.PrimaryKeyConstraint("operation_id", "saga_id"),
    )
    op.create_index(
        "ix_operation_sagas_operation_id_state_saga_id", "operation_sagas", ["operation_id", "state", "saga_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_operation_sagas_operation_id_state_saga_id", table_name="operation_sagas")
    op.drop_table("operation_sagas")
    op.drop_index("ix_operations_status_created_at", table_name="operations")
    op.drop_table("operations")
