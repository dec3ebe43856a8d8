"""Wrong setups of the local tools (`make run`, `demo`, `migrate`, `soak`, `bench`), each told in one line on
stderr with a non-zero exit instead of a traceback: a busy port, a database or Redis that does not answer, an
unsupported DATABASE_URL, a database this code cannot migrate, a malformed REDIS_URL.

No line names a password: hosts, ports, users and database names only.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from chalicelib.adapters import database
from chalicelib.settings import DEFAULT_PORTS, UnsupportedDatabaseUrl, database_engine, get_settings

EXIT_CODE = 2
CONNECT_TIMEOUT_SECONDS = 3
ENGINE_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}


class SetupError(Exception):
    """A wrong setup; the message is the whole line the user reads."""


def run(tool: str, main: Callable[[], int]) -> int:
    """`main()`, with a wrong setup told as `<tool>: <what is wrong>` on stderr and exit status 2."""
    try:
        return main()
    except SetupError as error:
        print(f"{tool}: {error}", file=sys.stderr, flush=True)
        return EXIT_CODE


def describe_database(url: str) -> str:
    """`MySQL (127.0.0.1:3306/test)`, `embedded SQLite (/path/saga.db)`: where the data lives, without credentials."""
    kind = database_engine(url)
    if kind == "sqlite":
        return f"embedded SQLite ({make_url(url).database})"
    parsed = make_url(url)
    return f"{ENGINE_NAMES[kind]} ({_where(parsed)}/{parsed.database})"


def check_stores(migrating: bool = True) -> str:
    """The configured database and Redis: their URLs well formed, both answer, the database migratable (or, when
    not `migrating`, migrated). The database's URL."""
    settings = get_settings()
    check_redis_url(settings.redis_url)
    url = check_database_url(settings.effective_database_url)
    check_database_answers(url)
    check_migrations(url, migrating)
    if settings.redis_url:
        check_redis_answers(settings.redis_url)
    return url


def check_database_url(url: str) -> str:
    try:
        database_engine(url)
        make_url(url)
    except UnsupportedDatabaseUrl as error:
        raise SetupError(str(error)) from None
    except ArgumentError:
        raise SetupError("DATABASE_URL is not a database URL (e.g. mysql+pymysql://root@127.0.0.1:3306/test)") from None
    return url


def check_database_answers(url: str) -> None:
    """Connect once, with a short timeout, and say why not if that fails."""
    parsed = make_url(url)
    kind = database_engine(url)
    if kind == "sqlite":
        return
    timeout = {"postgresql": "timeout", "mysql": "connect_timeout"}[kind]
    probe = create_engine(
        url, poolclass=NullPool, connect_args={timeout: CONNECT_TIMEOUT_SECONDS}, hide_parameters=True
    )
    try:
        with probe.connect():
            pass
    except DBAPIError as error:
        raise SetupError(_unanswered(parsed, kind, error)) from None
    finally:
        probe.dispose()


def _unanswered(url: URL, kind: str, error: DBAPIError) -> str:
    reason = _one_line(error.orig)
    where = f"{ENGINE_NAMES[kind]} at {_where(url)}"
    if "unknown database" in reason.lower() or "does not exist" in reason.lower():
        return f"{where} has no database {url.database!r} (DATABASE_URL): create it (CREATE DATABASE {url.database})"
    if "access denied" in reason.lower() or "authentication" in reason.lower() or "password" in reason.lower():
        return f"{where} refused user {url.username!r} (DATABASE_URL): {reason}"
    return f"{where} does not answer (DATABASE_URL): {reason}; start it, or point DATABASE_URL elsewhere"


def _where(url: URL) -> str:
    kind = url.get_backend_name()
    return f"{url.host or 'localhost'}:{url.port or DEFAULT_PORTS.get(kind, '?')}"


def _one_line(error: Any) -> str:
    """A driver's error as one short line: pymysql's (code, text), pg8000's dict, or a socket error."""
    args: tuple[Any, ...] = tuple(getattr(error, "args", ()))
    cause = getattr(error, "__cause__", None)
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    elif len(args) == 2 and isinstance(args[0], int):
        text = str(args[1])
    elif args and isinstance(args[0], dict):
        text = str(args[0].get("M", args[0]))
    else:
        text = str(error)
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


def check_migrations(url: str, migrating: bool = True) -> None:
    """The database is at a revision this code knows (it can upgrade from there), and holds no tables of ours
    without one; with `migrating` False, it must be at the newest."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(database.alembic_config(url))
    known = {revision.revision for revision in script.walk_revisions()}
    engine = database.make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            tables = set(inspect(connection).get_table_names())
    except DBAPIError as error:
        raise SetupError(f"{describe_database(url)}: cannot read its schema: {_one_line(error.orig)}") from None
    finally:
        engine.dispose()
    where, head = describe_database(url), script.get_current_head()
    if current is not None and current not in known:
        raise SetupError(
            f"{where} is migrated to revision {current!r}, which this code does not know (its newest is {head!r}): "
            "newer code migrated it; use another database (DATABASE_URL) or that code"
        )
    if current is None and tables & {"sagas", "products", "audit_log"}:
        raise SetupError(
            f"{where} holds tables but no Alembic revision: it was not migrated by this project; "
            "point DATABASE_URL at an empty database"
        )
    if not migrating and current != head:
        raise SetupError(f"{where} is not migrated (at {current or 'no revision'}, needs {head}): run make migrate")


def check_redis_url(url: str | None) -> None:
    if not url:
        return
    import redis

    try:
        redis.Redis.from_url(url)
        _redis_where(url)
    except ValueError as error:
        raise SetupError(
            f"REDIS_URL is malformed ({_one_line(error)}); expected redis://host:6379/0, rediss://… or unix://…"
        ) from None


def _redis_where(url: str) -> str:
    """`host:port` of a Redis URL (ValueError when it has no host or a port that is not a number)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    if not parts.hostname:
        raise ValueError("no host")
    return f"{parts.hostname}:{parts.port or 6379}"


def check_redis_answers(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=3, retry=None)
    try:
        client.ping()
    except redis.RedisError as error:
        raise SetupError(
            f"Redis at {_redis_where(url)} does not answer (REDIS_URL): {_one_line(error)}; start it, or point "
            "REDIS_URL elsewhere"
        ) from None
    finally:
        client.close()


def check_port_free(port: int, variable: str, tool: str) -> None:
    """Nothing listens on 127.0.0.1:`port` yet; otherwise say which variable picks another."""
    if port == 0:
        return
    with _probe() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise SetupError(f"cannot listen on 127.0.0.1:{port} ({error.strerror}): choose another port") from None
            raise SetupError(
                f"port {port} on 127.0.0.1 is in use: stop what listens there, or choose another with "
                f"{variable}={_another(port)} {tool}"
            ) from None


def _another(port: int) -> int:
    for candidate in range(port + 1, min(port + 100, 65535)):
        with _probe() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    return port + 1


def _probe() -> socket.socket:
    """A socket that binds as the servers do (SO_REUSEADDR): connections of a killed server lingering in
    TIME_WAIT do not make its port busy, a listener does."""
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return probe
