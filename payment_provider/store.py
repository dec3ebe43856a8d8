"""The provider's own ledger tables (SQLAlchemy Core) and the engine that reaches them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
    text,
)

SCHEMA = "payment_provider"
"""On PostgreSQL the tables live in this schema of the orchestrator's database, apart from its tables; on MySQL,
where a schema is a database of the server, in the database `<orchestrator's database>_payment_provider`."""
DEFAULT_SQLITE_FILE = Path(__file__).resolve().parent.parent / ".local" / "payment_provider.db"

metadata = MetaData()

charges = Table(
    "charges",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("saga_id", String(200), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("charge_id", String(40), ForeignKey(charges.c.id), nullable=False, index=True),
    Column("amount_cents", BigInteger, nullable=False),
    # `pending` or `cancelled`: settling is computed when read (pending and `settles_at_ms` passed).
    Column("status", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("settles_at_ms", BigInteger, nullable=False),
    Column("cancelled_at_ms", BigInteger, nullable=True),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("account", String(64), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("account", "endpoint", "idempotency_key"),
)


def resolve_url(database_url: str | None) -> str:
    """`database_url`, or the default SQLite file in the repository's `.local/` directory."""
    return database_url or f"sqlite:///{DEFAULT_SQLITE_FILE}"


def open_ledger_database(database_url: str | None) -> Engine:
    """An engine on the ledger's tables, creating the schema and tables when they are missing."""
    url = resolve_url(database_url)
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url)
    else:
        mysql = url.startswith("mysql")
        server = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_recycle=300,
            hide_parameters=True,
            **({"isolation_level": "READ COMMITTED"} if mysql else {}),
        )
        schema = schema_name(url)
        # Binary collation on MySQL: idempotency keys compare case-sensitively, as on PostgreSQL.
        collation = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if mysql else ""
        with server.begin() as connection:
            quoted = server.dialect.identifier_preparer.quote(schema)
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}{collation}"))
        engine = server.execution_options(schema_translate_map={None: schema})
    metadata.create_all(engine)
    return engine


def schema_name(database_url: str) -> str:
    """The schema that holds the ledger on a database server (see SCHEMA)."""
    url = make_url(database_url)
    return f"{url.database}_{SCHEMA}" if url.get_backend_name() == "mysql" else SCHEMA


def _sqlite_engine(url: str) -> Engine:
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True)

    # pysqlite starts transactions lazily, so two threads that read then write can deadlock on the lock
    # upgrade; BEGIN IMMEDIATE takes the write lock up front and the other writers wait their turn.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
