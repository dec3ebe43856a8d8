"""Which database errors are transient, told by the code the server or the driver gives, on both engines.

pg8000 raises every PostgreSQL error as a `ProgrammingError` whose first argument is the server's fields (the
SQLSTATE under "C"); PyMySQL puts the MySQL/MariaDB error number first. The class says little (a deadlock is a
`ProgrammingError` on one engine and an `OperationalError` on the other), so the code decides.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class Transience(Enum):
    CONFLICT = "conflict"
    """Another transaction holds or changed the rows: the same work, run again, goes through."""
    UNAVAILABLE = "unavailable"
    """The server cannot serve us now: unreachable, shutting down or failing over, out of connections, read-only
    (a demoted primary), or the statement was cut short. A fresh connection, later, may work."""


POSTGRES_CODES: dict[str, Transience] = {
    "40P01": Transience.CONFLICT,  # deadlock_detected
    "40001": Transience.CONFLICT,  # serialization_failure
    "55P03": Transience.CONFLICT,  # lock_not_available (lock_timeout, NOWAIT)
    "40003": Transience.UNAVAILABLE,  # statement_completion_unknown
    "57P01": Transience.UNAVAILABLE,  # admin_shutdown (pg_terminate_backend, a failover, a restart)
    "57P02": Transience.UNAVAILABLE,  # crash_shutdown
    "57P03": Transience.UNAVAILABLE,  # cannot_connect_now (starting up, recovering)
    "57P05": Transience.UNAVAILABLE,  # idle_session_timeout
    "57014": Transience.UNAVAILABLE,  # query_canceled (statement_timeout, pg_cancel_backend)
    "25P03": Transience.UNAVAILABLE,  # idle_in_transaction_session_timeout
    "53300": Transience.UNAVAILABLE,  # too_many_connections
    "25006": Transience.UNAVAILABLE,  # read_only_sql_transaction: the server is a replica now
}
"""PostgreSQL's SQLSTATEs (Appendix A of its manual); all of class 08, connection exceptions, are UNAVAILABLE too."""
POSTGRES_CONNECTION_CLASS = "08"

MYSQL_CODES: dict[int, Transience] = {
    1213: Transience.CONFLICT,  # ER_LOCK_DEADLOCK
    1205: Transience.CONFLICT,  # ER_LOCK_WAIT_TIMEOUT (also MariaDB's NOWAIT)
    3572: Transience.CONFLICT,  # ER_LOCK_NOWAIT (MySQL 8)
    1040: Transience.UNAVAILABLE,  # ER_CON_COUNT_ERROR: too many connections
    1203: Transience.UNAVAILABLE,  # ER_TOO_MANY_USER_CONNECTIONS (max_user_connections)
    1226: Transience.UNAVAILABLE,  # ER_USER_LIMIT_REACHED (an account's MAX_USER_CONNECTIONS...)
    1290: Transience.UNAVAILABLE,  # ER_OPTION_PREVENTS_STATEMENT: --read-only, a demoted primary
    1836: Transience.UNAVAILABLE,  # ER_READ_ONLY_MODE
    1053: Transience.UNAVAILABLE,  # ER_SERVER_SHUTDOWN
    1927: Transience.UNAVAILABLE,  # ER_CONNECTION_KILLED (MariaDB: KILL CONNECTION)
    1317: Transience.UNAVAILABLE,  # ER_QUERY_INTERRUPTED (KILL QUERY)
    1969: Transience.UNAVAILABLE,  # ER_STATEMENT_TIMEOUT (MariaDB's max_statement_time)
    3024: Transience.UNAVAILABLE,  # ER_QUERY_TIMEOUT (MySQL's max_execution_time)
    4031: Transience.UNAVAILABLE,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8 closed an idle connection)
    1158: Transience.UNAVAILABLE,  # ER_NET_READ_ERROR
    1159: Transience.UNAVAILABLE,  # ER_NET_READ_INTERRUPTED
    1160: Transience.UNAVAILABLE,  # ER_NET_ERROR_ON_WRITE
    1161: Transience.UNAVAILABLE,  # ER_NET_WRITE_INTERRUPTED
    2002: Transience.UNAVAILABLE,  # CR_CONNECTION_ERROR
    2003: Transience.UNAVAILABLE,  # CR_CONN_HOST_ERROR: cannot connect
    2006: Transience.UNAVAILABLE,  # CR_SERVER_GONE_ERROR
    2013: Transience.UNAVAILABLE,  # CR_SERVER_LOST
    2055: Transience.UNAVAILABLE,  # CR_SERVER_LOST_EXTENDED
}
"""MySQL's and MariaDB's error numbers (server and client error references)."""

CONNECTION_UNUSABLE = frozenset(
    [code for code, kind in POSTGRES_CODES.items() if kind is Transience.UNAVAILABLE and code != "57014"]
    + [code for code, kind in MYSQL_CODES.items() if kind is Transience.UNAVAILABLE and code not in (1317, 1969, 3024)]
)
"""After these the connection is no use (closed, or bound to a server that is now read-only): the pool drops its
connections, so that a retry opens a fresh one, which a failover's new primary answers."""


def driver_code(error: BaseException) -> str | int | None:
    """The SQLSTATE (pg8000) or error number (PyMySQL) of a driver's error, or of SQLAlchemy's wrapping of it."""
    original = getattr(error, "orig", error)
    args = getattr(original, "args", ())
    first = args[0] if args else None
    if isinstance(first, dict):
        code = first.get("C")
        return code if isinstance(code, str) else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None


def transience(error: BaseException) -> Transience | None:
    """Whether running the same work again may succeed, and why; None for a fault that a retry would repeat."""
    if isinstance(error, ConnectionError):  # pg8000 lets a reset socket escape bare when the pool pings
        return Transience.UNAVAILABLE
    if not isinstance(error, DBAPIError):
        return None
    if error.connection_invalidated:
        return Transience.UNAVAILABLE
    code = driver_code(error)
    if isinstance(code, str):
        return POSTGRES_CODES.get(code) or (
            Transience.UNAVAILABLE if code.startswith(POSTGRES_CONNECTION_CLASS) else None
        )
    if isinstance(code, int) and code:
        return MYSQL_CODES.get(code)
    # No code: pg8000's "network error", PyMySQL's closed connection (0), SQLite's busy or locked file.
    return Transience.UNAVAILABLE if isinstance(error, OperationalError | InterfaceError) else None


def is_lock_conflict(error: BaseException) -> bool:
    """Whether a database error is another transaction holding the rows, rather than a fault."""
    return transience(error) is Transience.CONFLICT


def drop_unusable_connections(engine: Engine) -> None:
    """Tell SQLAlchemy that the errors of CONNECTION_UNUSABLE are disconnects: it invalidates the connection and
    the pool's older ones (its dialects know the drivers' own disconnect errors, not these server codes)."""

    @event.listens_for(engine, "handle_error")
    def _unusable(context: Any) -> None:
        if driver_code(context.original_exception) in CONNECTION_UNUSABLE:
            context.is_disconnect = True
