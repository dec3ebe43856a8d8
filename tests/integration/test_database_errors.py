"""Each database error a retry would fix, provoked for real on PostgreSQL and on MariaDB/MySQL, is told transient
by its code (`chalicelib/adapters/database_errors.py`): deadlocks, serialization failures and lock timeouts as
conflicts; killed sessions, exhausted connections, read-only servers and cut statements as the database being
unavailable. Errors a retry would repeat are not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, text

from chalicelib.adapters.database import make_engine
from chalicelib.adapters.database_errors import Transience, driver_code, transience
from tests.conftest import ADMIN_DATABASE_URL, ADMIN_MYSQL_URL
from tests.database_faults import account, admin_connection, kill_session, sessions_waiting_on_a_lock, wait_for
from tests.helpers import throwaway_database

CONFLICT, UNAVAILABLE = Transience.CONFLICT, Transience.UNAVAILABLE


@dataclass(frozen=True)
class Scratch:
    name: str
    url: str
    engine: Engine

    @property
    def mysql(self) -> bool:
        return self.name == "mysql"


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def scratch_database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A throwaway database with a table of two rows, on each server."""
    admin_url = ADMIN_MYSQL_URL if request.param == "mysql" else ADMIN_DATABASE_URL
    with throwaway_database(admin_url, "saga_db_errors") as url:
        with admin_connection(url) as admin:
            admin.execute(text("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
            admin.execute(text("INSERT INTO counters (id, n) VALUES (1, 0), (2, 0)"))
        yield request.param, url


@pytest.fixture
def scratch(scratch_database: tuple[str, str]) -> Iterator[Scratch]:
    """The database with an engine as the code builds it, new for each test: the session settings a test makes
    (lock and statement timeouts) stay on the connections of its pool."""
    name, url = scratch_database
    engine = make_engine(url)
    yield Scratch(name, url, engine)
    engine.dispose()


def _raised(action: Callable[[], object]) -> Exception:
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("no error was raised")


def _bump(connection: Connection, row: int) -> None:
    connection.execute(text("UPDATE counters SET n = n + 1 WHERE id = :id"), {"id": row})


def _while_waiting_on_a_lock(
    scratch: Scratch, waiter: Callable[[Connection], object], act: Callable[[int], object] | None = None
) -> Exception:
    """`waiter` runs on a connection of the code's engine while ours holds row 1; once it waits, `act(session)`
    (without an act, the waiter's own timeout ends the wait)."""
    errors: list[Exception] = []
    with scratch.engine.connect() as holder, scratch.engine.connect() as blocked:
        _bump(holder, 1)
        thread = threading.Thread(target=lambda: errors.append(_raised(lambda: waiter(blocked))))
        thread.start()
        if act is not None:
            with admin_connection(scratch.url) as admin:
                session = wait_for(lambda: sessions_waiting_on_a_lock(admin, scratch.url), "a session waits")
                act(session[0])  # type: ignore[index]
        thread.join(120)
        holder.rollback()
    return errors[0]


def _assert_told(error: Exception, kind: Transience | None, *codes: str | int) -> None:
    assert transience(error) is kind, f"{type(error).__name__} {driver_code(error)}: {error}"
    if codes:
        assert driver_code(error) in codes


def test_a_deadlock_is_a_conflict(scratch: Scratch) -> None:
    errors: list[Exception] = []
    with scratch.engine.connect() as first, scratch.engine.connect() as second:
        _bump(first, 1)
        _bump(second, 2)

        def cross(connection: Connection, row: int) -> None:
            try:
                _bump(connection, row)
            except Exception as error:
                errors.append(error)
            connection.rollback()

        thread = threading.Thread(target=cross, args=(first, 2))
        thread.start()
        with admin_connection(scratch.url) as admin:
            wait_for(lambda: sessions_waiting_on_a_lock(admin, scratch.url), "the first waits on the second")
        cross(second, 1)
        thread.join(60)
    assert len(errors) == 1
    _assert_told(errors[0], CONFLICT, "40P01", 1213)


def test_a_serialization_failure_is_a_conflict(scratch: Scratch) -> None:
    with scratch.engine.connect() as reader, scratch.engine.connect() as writer:
        serializable = reader.execution_options(isolation_level="SERIALIZABLE")
        serializable.execute(text("SELECT n FROM counters WHERE id = 1")).scalar_one()
        if scratch.mysql:  # InnoDB's SERIALIZABLE locks what it read: the writer meets that lock instead
            writer.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            error = _raised(lambda: _bump(writer, 1))
            _assert_told(error, CONFLICT, 1205)
            return
        _bump(writer, 1)
        writer.commit()
        error = _raised(lambda: _bump(serializable, 1))
        serializable.rollback()
    _assert_told(error, CONFLICT, "40001")


def test_a_lock_timeout_is_a_conflict(scratch: Scratch) -> None:
    timeout = "SET SESSION innodb_lock_wait_timeout = 1" if scratch.mysql else "SET lock_timeout = '200ms'"

    def wait_out(connection: Connection) -> None:
        connection.execute(text(timeout))
        _bump(connection, 1)

    error = _while_waiting_on_a_lock(scratch, wait_out)
    _assert_told(error, CONFLICT, "55P03", 1205)


def test_a_lock_not_taken_at_once_nowait_is_a_conflict(scratch: Scratch) -> None:
    with scratch.engine.connect() as holder, scratch.engine.connect() as other:
        _bump(holder, 1)
        error = _raised(lambda: other.execute(text("SELECT n FROM counters WHERE id = 1 FOR UPDATE NOWAIT")))
        holder.rollback()
    _assert_told(error, CONFLICT, "55P03", 1205, 3572)


def test_a_session_killed_by_the_server_is_unavailable(scratch: Scratch) -> None:
    """pg_terminate_backend is what a failover or a restart does to every session (57P01); KILL CONNECTION on
    MariaDB answers 1927 or loses the connection (2013). The pool then drops the dead connection."""
    with admin_connection(scratch.url) as admin:
        error = _while_waiting_on_a_lock(
            scratch, lambda connection: _bump(connection, 1), lambda session: kill_session(admin, scratch.url, session)
        )
    _assert_told(error, UNAVAILABLE)
    assert driver_code(error) in ("57P01", 1927, 2013, None)
    assert error.connection_invalidated  # type: ignore[attr-defined]
    with scratch.engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_a_cancelled_statement_is_unavailable(scratch: Scratch) -> None:
    """A statement cut by the server's statement timeout: MariaDB's max_statement_time (1969), PostgreSQL's
    statement_timeout (57014); and by an operator (KILL QUERY, 1317)."""
    limit = "SET SESSION max_statement_time = 0.2" if scratch.mysql else "SET statement_timeout = '200ms'"

    def cut(connection: Connection) -> None:
        connection.execute(text(limit))
        _bump(connection, 1)

    error = _while_waiting_on_a_lock(scratch, cut)
    _assert_told(error, UNAVAILABLE, "57014", 1969, 3024)
    if scratch.mysql:
        with admin_connection(scratch.url) as admin:

            def wait(connection: Connection) -> None:
                connection.execute(text("SET SESSION max_statement_time = 0"))
                _bump(connection, 1)

            killed = _while_waiting_on_a_lock(scratch, wait, lambda s: admin.execute(text(f"KILL QUERY {s}")))
        _assert_told(killed, UNAVAILABLE, 1317)


def test_too_many_connections_is_unavailable(scratch: Scratch) -> None:
    limit = "MAX_USER_CONNECTIONS 1" if scratch.mysql else "CONNECTION LIMIT 1"
    with account(scratch.url, limit) as url:
        engine = make_engine(url)
        try:
            with engine.connect():
                error = _raised(lambda: make_engine(url).connect())
        finally:
            engine.dispose()
    _assert_told(error, UNAVAILABLE, "53300", 1226, 1203, 1040)


def test_a_read_only_server_is_unavailable_and_its_connection_dropped(scratch: Scratch) -> None:
    """After a failover the old primary, or a replica, refuses writes: 25006 on PostgreSQL (here a role whose
    transactions are read-only), 1290 on MariaDB (read_only, for an account without READ ONLY ADMIN)."""
    if scratch.mysql:
        with account(scratch.url) as url, admin_connection(scratch.url) as admin:
            engine = make_engine(url)
            admin.execute(text("SET SESSION lock_wait_timeout = 10"))
            admin.execute(text("SET GLOBAL read_only = 1"))
            try:
                with engine.connect() as connection:
                    error = _raised(lambda: _bump(connection, 1))
            finally:
                admin.execute(text("SET GLOBAL read_only = 0"))
                engine.dispose()
        _assert_told(error, UNAVAILABLE, 1290, 1836)
    else:
        with account(scratch.url, "default_transaction_read_only = on") as url:
            engine = make_engine(url)
            try:
                with engine.connect() as connection:
                    error = _raised(lambda: _bump(connection, 1))
            finally:
                engine.dispose()
        _assert_told(error, UNAVAILABLE, "25006")
    assert error.connection_invalidated  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "statement",
    ["SELECT * FROM no_such_table", "UPDATE counters SET missing = 1", "INSERT INTO counters (id, n) VALUES (1, 0)"],
    ids=["no-table", "no-column", "duplicate-key"],
)
def test_errors_a_retry_would_repeat_are_not_transient(scratch: Scratch, statement: str) -> None:
    with scratch.engine.connect() as connection:
        error = _raised(lambda: connection.execute(text(statement)))
    assert transience(error) is None
    assert not error.connection_invalidated  # type: ignore[attr-defined]
