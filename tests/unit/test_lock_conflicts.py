"""Which database errors mean another transaction holds the rows: the retry's lease gives way on them (409)."""

from __future__ import annotations

import pg8000.dbapi
import pymysql
import pytest
from sqlalchemy.exc import OperationalError

from chalicelib.adapters.database import is_lock_conflict


@pytest.mark.parametrize(
    ("driver_error", "conflict"),
    [
        (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), True),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        (pg8000.dbapi.DatabaseError({"S": "ERROR", "C": "40P01", "M": "deadlock detected"}), True),
        (pg8000.dbapi.DatabaseError({"S": "ERROR", "C": "55P03", "M": "could not obtain lock"}), True),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), False),
        (pg8000.dbapi.DatabaseError({"S": "ERROR", "C": "42P01", "M": "relation does not exist"}), False),
    ],
    ids=["mysql-deadlock", "mysql-lock-wait", "pg-deadlock", "pg-lock-unavailable", "mysql-down", "pg-no-table"],
)
def test_lock_conflicts_are_told_from_faults(driver_error: Exception, conflict: bool) -> None:
    assert is_lock_conflict(OperationalError("UPDATE sagas", {}, driver_error)) is conflict


def test_an_error_without_a_driver_error_is_no_conflict() -> None:
    assert is_lock_conflict(RuntimeError("no orig")) is False
