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
    bind = op.get_bind()
    table_options = _mysql_table(bind) if bind.dialect.name in ("mysql", "mariadb") else {}
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
        **table_options,
    )
    if table_options:
        # MariaDB makes a JSON column utf8mb4_bin whatever the table says; 0008 converted the older ones. Before any
        # foreign key refers to the table, which would forbid it.
        op.execute(f"ALTER TABLE operations CONVERT TO CHARACTER SET utf8mb4 COLLATE {table_options['mysql_collate']}")
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
        **table_options,
    )
    op.create_index(
        "ix_operation_sagas_operation_id_state_saga_id", "operation_sagas", ["operation_id", "state", "saga_id"]
    )


def _mysql_table(bind: sa.engine.Connection) -> dict[str, str]:
    """The binary NO PAD collation of revision 0008, named: a session that ran 0008's ALTER DATABASE (a fresh
    database migrated in one go) still makes tables in the database's earlier default."""
    collation = "utf8mb4_nopad_bin" if getattr(bind.dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}


def downgrade() -> None:
    op.drop_index("ix_operation_sagas_operation_id_state_saga_id", table_name="operation_sagas")
    op.drop_table("operation_sagas")
    op.drop_index("ix_operations_status_created_at", table_name="operations")
    op.drop_table("operations")
