"""Alembic environment: migrates the database named by the config, else DATABASE_URL / embedded SQLite."""

from alembic import context
from sqlalchemy import Connection

from chalicelib.adapters.database import make_engine
from chalicelib.adapters.tables import Base
from chalicelib.settings import get_settings

url = context.config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url, sqlite_foreign_keys=False)
    with engine.connect() as connection:
        run(connection)
    engine.dispose()
