"""MySQL and MariaDB compare keys without padding: 'k' and 'k ' are two keys, as on PostgreSQL.

utf8mb4_bin is a PAD SPACE collation: it ignores trailing spaces, so two Idempotency-Keys that differ only by them
met as one. The tables (and the database's default, for tables made later) move to the binary NO PAD collation of
the server: utf8mb4_0900_bin on MySQL 8, utf8mb4_nopad_bin on MariaDB. PostgreSQL and SQLite are unchanged.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAD_SPACE = "utf8mb4_bin"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        _collate(bind, "utf8mb4_nopad_bin" if getattr(bind.dialect, "is_mariadb", False) else "utf8mb4_0900_bin")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        _collate(bind, PAD_SPACE)


def _collate(bind: sa.engine.Connection, collation: str) -> None:
    # A column under a foreign key cannot change collation (MariaDB refuses it even without the checks): the keys
    # go, every table changes, and the keys come back.
    inspector = sa.inspect(bind)
    tables = [table for table in inspector.get_table_names() if table != "alembic_version"]
    foreign_keys = {table: inspector.get_foreign_keys(table) for table in tables}
    for table, keys in foreign_keys.items():
        for key in keys:
            op.drop_constraint(key["name"], table, type_="foreignkey")
    op.execute(f"ALTER DATABASE CHARACTER SET utf8mb4 COLLATE {collation}")
    for table in tables:
        op.execute(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
    for table, keys in foreign_keys.items():
        for key in keys:
            op.create_foreign_key(
                key["name"],
                table,
                key["referred_table"],
                key["constrained_columns"],
                key["referred_columns"],
                **{
                    option: value
                    for option, value in key.get("options", {}).items()
                    if option in ("ondelete", "onupdate")
                },
            )
