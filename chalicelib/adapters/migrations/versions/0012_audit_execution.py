"""Each attempt row names the execution it ran in (docs/design.md §4.2, invariant 7): Step Functions counts a
Task's attempts from 1 in every execution, so a retried or resumed saga's attempts are told from the earlier
execution's by it. Rows written before this revision have none.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("execution", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("execution")
