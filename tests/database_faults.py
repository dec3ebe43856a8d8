"""Provoking real database errors: row locks held from another connection, accounts with limits, killed
sessions. Used by the classifier's tests and by the sagas that meet those errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, make_url, text

PG_WAITING_ON_A_LOCK = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)
MYSQL_WAITING_ON_A_LOCK = (
    "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
    " AND trx_mysql_thread_id IN (SELECT id FROM information_schema.processlist WHERE db = DATABASE())"
)


def is_mysql(url: str) -> bool:
    return url.startswith("mysql")


@contextmanager
def admin_connection(url: str) -> Iterator[Connection]:
    """A plain connection to the database of `url` as its own (administrator) user, in autocommit."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def account(url: str, *options: str) -> Iterator[str]:
    """A new login with every right on the database of `url` and the given options (PostgreSQL: role settings
    such as `lock_timeout = '2s'` or `CONNECTION LIMIT 1`; MySQL: `MAX_USER_CONNECTIONS 1`...); its URL. Dropped
    afterwards, with its sessions."""
    name = f"saga_{uuid.uuid4().hex[:10]}"
    database = make_url(url).database
    with admin_connection(url) as admin:
        if is_mysql(url):
            limits = f" WITH {' '.join(options)}" if options else ""
            admin.execute(text(f"CREATE USER '{name}'@'%'{limits}"))
            admin.execute(text(f"GRANT ALL ON `{database}`.* TO '{name}'@'%'"))
        else:
            limits = " ".join(option for option in options if option.startswith("CONNECTION LIMIT"))
            admin.execute(text(f'CREATE ROLE "{name}" LOGIN {limits}'))
            for setting in (option for option in options if not option.startswith("CONNECTION LIMIT")):
                admin.execute(text(f'ALTER ROLE "{name}" SET {setting}'))
            admin.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"'))
            admin.execute(text(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{name}"'))
        try:
            yield make_url(url).set(username=name).render_as_string(hide_password=False)
        finally:
            if is_mysql(url):
                admin.execute(text(f"DROP USER '{name}'@'%'"))  # MariaDB ends no session by it: none is left
            else:
                admin.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"))
                admin.execute(text(f'DROP OWNED BY "{name}"'))
                admin.execute(text(f'DROP ROLE "{name}"'))


def set_role(url: str, role_url: str, setting: str) -> None:
    """`ALTER ROLE ... SET` (or `RESET`) for the role of `role_url`: new sessions of it take it."""
    name = make_url(role_url).username
    with admin_connection(url) as admin:
        admin.execute(text(f'ALTER ROLE "{name}" {setting}'))


@contextmanager
def row_locked(url: str, table: str, where: str) -> Iterator[Connection]:
    """A transaction of our own holding the rows' locks (`SELECT ... FOR UPDATE`) until the block ends."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"SELECT * FROM {table} WHERE {where} FOR UPDATE"))
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


def sessions_waiting_on_a_lock(admin: Connection, url: str) -> list[int]:
    """The ids of the database's sessions waiting on a lock (another's)."""
    query = MYSQL_WAITING_ON_A_LOCK if is_mysql(url) else PG_WAITING_ON_A_LOCK
    return [int(session) for session in admin.execute(text(query)).scalars()]


def kill_session(admin: Connection, url: str, session: int) -> None:
    """What a failover or an operator does to a session: KILL CONNECTION, or pg_terminate_backend (57P01)."""
    if is_mysql(url):
        admin.execute(text(f"KILL CONNECTION {session}"))
    else:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session})


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> object:
    """Poll until `condition()` is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:g} s")
