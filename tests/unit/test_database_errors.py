"""How database errors are told by their code (`chalicelib/adapters/database_errors.py`), for every code it knows,
as each driver raises it and SQLAlchemy wraps it. tests/integration/test_database_errors.py provokes them for real."""

from __future__ import annotations

import sqlite3

import pg8000.dbapi
import pymysql
import pytest
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from chalicelib.adapters.database_errors import (
    CONNECTION_UNUSABLE,
    MYSQL_CODES,
    POSTGRES_CODES,
    Transience,
    is_lock_conflict,
    transience,
)


def _postgres(code: str) -> ProgrammingError:
    """As pg8000 raises every server error: a ProgrammingError carrying the server's fields."""
    fields = {"S": "ERROR", "C": code, "M": "the server's message"}
    return ProgrammingError("UPDATE products ...", {"sku": "secret"}, pg8000.dbapi.ProgrammingError(fields))


def _mysql(code: int) -> OperationalError:
    return OperationalError("UPDATE products ...", {"sku": "secret"}, pymysql.err.OperationalError(code, "message"))


@pytest.mark.parametrize(("code", "kind"), POSTGRES_CODES.items())
def test_every_postgres_sqlstate_is_told(code: str, kind: Transience) -> None:
    assert transience(_postgres(code)) is kind
    assert is_lock_conflict(_postgres(code)) is (kind is Transience.CONFLICT)


@pytest.mark.parametrize(("code", "kind"), MYSQL_CODES.items())
def test_every_mysql_error_number_is_told(code: int, kind: Transience) -> None:
    assert transience(_mysql(code)) is kind
    assert is_lock_conflict(_mysql(code)) is (kind is Transience.CONFLICT)


@pytest.mark.parametrize("code", ["08000", "08003", "08006", "08001", "08004", "08P01"])
def test_every_postgres_connection_exception_is_unavailable(code: str) -> None:
    assert transience(_postgres(code)) is Transience.UNAVAILABLE


def test_the_deadlocks_and_lock_waits_of_both_engines_are_conflicts() -> None:
    conflicts = {code for code, kind in (*POSTGRES_CODES.items(), *MYSQL_CODES.items()) if kind is Transience.CONFLICT}
    assert conflicts == {"40P01", "40001", "55P03", 1213, 1205, 3572}


@pytest.mark.parametrize("code", ["42P01", "23505", "22012", "42501", "28P01"])
def test_postgres_faults_a_retry_would_repeat_are_not_transient(code: str) -> None:
    assert transience(_postgres(code)) is None


@pytest.mark.parametrize("code", [1054, 1146, 1062, 1045, 1792])
def test_mysql_faults_a_retry_would_repeat_are_not_transient(code: int) -> None:
    assert transience(_mysql(code)) is None


def test_a_lost_connection_without_a_code_is_unavailable() -> None:
    network = InterfaceError("SELECT 1", {}, pg8000.dbapi.InterfaceError("network error"))
    closed = InterfaceError("SELECT 1", {}, pymysql.err.InterfaceError(0, ""))
    busy = OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    assert [transience(error) for error in (network, closed, busy, ConnectionError())] == [Transience.UNAVAILABLE] * 4


def test_a_connection_the_dialect_invalidated_is_unavailable_whatever_its_code() -> None:
    error = DatabaseError("SELECT 1", {}, pg8000.dbapi.DatabaseError({"C": "XX000"}), connection_invalidated=True)
    assert transience(error) is Transience.UNAVAILABLE


def test_errors_that_are_no_database_errors_are_not_told() -> None:
    assert transience(RuntimeError("no orig")) is None
    assert transience(ValueError(1213)) is None


def test_a_session_cut_short_keeps_its_connection_and_the_other_unavailable_codes_drop_it() -> None:
    assert {"57P01", "25006", "53300", 1290, 1927, 2013} <= CONNECTION_UNUSABLE
    assert not {"57014", 1317, 1969, 3024, "40P01", 1213} & CONNECTION_UNUSABLE
