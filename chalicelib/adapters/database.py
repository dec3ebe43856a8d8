"""Engine, unit of work and migrations for PostgreSQL (pg8000), MySQL/MariaDB (PyMySQL) or the embedded SQLite
file."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from chalicelib.adapters.database_errors import driver_code, drop_unusable_connections
from chalicelib.observability import telemetry
from chalicelib.settings import DATABASE_DRIVERS, DEFAULT_PORTS, database_engine, get_settings, reread_secret

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HIDE_PARAMETERS = True
"""SQLAlchemy puts a failed statement's parameters in its error's message, which is logged: a saga INSERT carries the
payment token (docs/design.md §3.4). Hidden, the message names the statement alone."""


def make_engine(url: str, sqlite_foreign_keys: bool = True) -> Engine:
    """An engine for `url`; migrations turn SQLite's foreign keys off, since Alembic rebuilds tables there."""
    kind = database_engine(url)
    if kind == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=HIDE_PARAMETERS
        )
        _serialise_sqlite_writers(engine, sqlite_foreign_keys)
    elif kind == "mysql":
        connect_args: dict[str, Any] = {"ssl": ssl.create_default_context()} if get_settings().database_tls else {}
        # InnoDB defaults to REPEATABLE READ; the steps are written for PostgreSQL's READ COMMITTED (an UPDATE's
        # WHERE sees the latest committed row, and fewer gap locks mean fewer deadlocks).
        engine = create_engine(
            url,
            connect_args=connect_args,
            isolation_level="READ COMMITTED",
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_recycle=300,
            hide_parameters=HIDE_PARAMETERS,
        )
    else:
        connect_args = {"ssl_context": True} if get_settings().database_tls else {}
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_recycle=300,
            hide_parameters=HIDE_PARAMETERS,
        )
    _trace_queries(engine)
    drop_unusable_connections(engine)
    return engine


def _trace_queries(engine: Engine) -> None:
    """Each statement a subsegment named by the database (`postgresql`, `mysql`, `sqlite`) when tracing is on."""
    database = engine.dialect.name
    url = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "before_cursor_execute")
    def _begin(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        subsegment = telemetry.begin_traced(database, namespace="remote")
        if subsegment is not None:
            subsegment.set_sql({"database_type": database, "url": url, "sanitized_query": statement})
            connection.info.setdefault("subsegments", []).append(subsegment)

    @event.listens_for(engine, "after_cursor_execute")
    def _end(connection: Any, *_: Any) -> None:
        if connection.info.get("subsegments"):
            telemetry.end_traced(connection.info["subsegments"].pop())

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        subsegments = context.connection.info.get("subsegments") if context.connection is not None else None
        if subsegments:
            telemetry.end_traced(subsegments.pop(), context.original_exception)


def _serialise_sqlite_writers(engine: Engine, foreign_keys: bool) -> None:
    # pysqlite starts transactions lazily, so two threads that read then write can deadlock
    # on the lock upgrade; BEGIN IMMEDIATE takes the write lock up front and waits its turn.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


AUTHENTICATION_FAILURES = {"28P01", "28000", 1045}
"""What PostgreSQL (invalid password, invalid authorization) and MySQL (access denied) answer to credentials they
refuse: after a rotation, the secret holds new ones."""


def _reconnect_with_rotated_credentials(engine: Engine) -> None:
    """A connection the server refuses for its credentials is opened once more with those the secret holds now."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.Error as error:
            if driver_code(error) not in AUTHENTICATION_FAILURES:
                raise
        telemetry.logger.warning("the database refused its credentials; reading them again from their secret")
        settings = get_settings()
        reread_secret(settings.database_secret_arn)
        cparams["user"], cparams["password"] = settings.database_credentials
        return dialect.connect(*cargs, **cparams)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    if not settings.database_url and settings.database_host and settings.database_secret_arn:
        _reconnect_with_rotated_credentials(engine)
    return engine


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def prime() -> None:
    """Import and build ahead what the first transaction would (the dialect, its driver, the ORM's mappers), as
    before a SnapStart snapshot; reads no secret and opens no connection."""
    settings = get_settings()
    if settings.database_url:
        url = settings.database_url
    elif settings.database_host and settings.database_secret_arn:
        kind = settings.database_engine
        port = settings.database_port or DEFAULT_PORTS[kind]
        url = f"{DATABASE_DRIVERS[kind]}://{settings.database_host}:{port}/{settings.database_name}"
    else:
        url = "sqlite://"
    make_engine(url).dispose()
    configure_mappers()


def reset_engine() -> None:
    """Forget the cached engine (after the settings changed)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()


class UnitOfWork:
    """One database transaction: `with UnitOfWork() as uow: ...; uow.commit()`.

    Leaving the block without commit rolls back.
    """

    session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = _session_factory()()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.session.close()  # rolls back what was not committed; loaded objects stay readable

    def commit(self) -> None:
        self.session.commit()


def migrate(url: str | None = None) -> None:
    """Bring the database to the newest Alembic revision."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def migrate_for_deploy(url: str | None = None) -> str:
    """Bring the database to the newest revision this code knows, unless it is already past it: a deploy being
    rolled back runs the previous code, and migrations only add, so the newer schema serves it. The revision the
    database is at."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    engine = make_engine(url or get_settings().effective_database_url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current is not None and current not in {revision.revision for revision in script.walk_revisions()}:
        return current
    command.upgrade(config, "head")
    return str(script.get_current_head())


def alembic_config(url: str | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", (url or get_settings().effective_database_url).replace("%", "%%"))
    return config
