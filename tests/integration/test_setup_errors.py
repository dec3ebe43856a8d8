"""Every wrong setup of `make run`, `demo`, `migrate`, `soak` and `bench` is one line on stderr and exit status 2:
no traceback, no password, and the line says what to change."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, child_env

PASSWORD = "hunter2-not-shown"
TOOLS = {
    "make run": ["-m", "infra.engine.local_server"],
    "make demo": ["-m", "infra.tools.demo"],
    "make migrate": ["-m", "infra.tools.migrate"],
    "make soak": ["-m", "infra.tools.soak", "--count", "1"],
    "make bench": ["-m", "bench", "--calls", "1"],
}


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def _run(tool: str, database_url: str, redis_url: str | None = None, **extra: str) -> str:
    """The tool's one line on stderr (asserting that it is one line, exit status 2, no traceback)."""
    env = child_env(database_url, redis_url, SAGA_ALLOW_FAULTS="true", **extra)
    env.setdefault("PORT", str(_closed_port()))
    env.setdefault("PROVIDER_PORT", str(_closed_port()))
    done = subprocess.run(
        [sys.executable, *TOOLS[tool]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert PASSWORD not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{tool}: ")
    return lines[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_database_that_does_not_answer_is_named_by_host_and_port(tool: str) -> None:
    port = _closed_port()
    line = _run(tool, f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:{port}/test")

    assert f"MySQL at 127.0.0.1:{port} does not answer (DATABASE_URL)" in line


def test_a_postgresql_that_does_not_answer_is_named_too() -> None:
    port = _closed_port()
    line = _run("make demo", f"postgresql+pg8000://postgres:{PASSWORD}@127.0.0.1:{port}/test")

    assert f"PostgreSQL at 127.0.0.1:{port} does not answer" in line


@pytest.mark.parametrize(
    ("tool", "url"),
    [
        ("make migrate", "mysql://root@127.0.0.1/test"),
        ("make soak", "postgresql://postgres@127.0.0.1/test"),
        ("make run", "oracle://scott@127.0.0.1/test"),
    ],
)
def test_an_unsupported_database_url_lists_the_supported_ones(tool: str, url: str) -> None:
    line = _run(tool, url)

    assert "is not supported; use one of: postgresql+pg8000://…, mysql+pymysql://…, sqlite:///<file>" in line


@pytest.mark.parametrize(
    ("tool", "redis_url", "problem"),
    [
        ("make run", "redis://127.0.0.1:port/0", "Port could not be cast"),
        ("make demo", "http://127.0.0.1:6379", "schemes"),
        ("make bench", "redis://", "no host"),
    ],
)
def test_a_malformed_redis_url_is_told(tool: str, redis_url: str, problem: str, tmp_path: Path) -> None:
    line = _run(tool, f"sqlite:///{tmp_path / 'saga.db'}", redis_url)

    assert line.startswith(f"{tool}: REDIS_URL is malformed (") and problem in line


def test_a_redis_that_does_not_answer_is_named_by_host_and_port(tmp_path: Path) -> None:
    port = _closed_port()
    line = _run("make demo", f"sqlite:///{tmp_path / 'saga.db'}", f"redis://:{PASSWORD}@127.0.0.1:{port}/0")

    assert f"Redis at 127.0.0.1:{port} does not answer (REDIS_URL)" in line


@pytest.mark.parametrize(("variable", "other"), [("PORT", "PROVIDER_PORT"), ("PROVIDER_PORT", "PORT")])
def test_a_busy_port_is_named_with_the_variable_that_moves_it(
    variable: str, other: str, listening: int, tmp_path: Path
) -> None:
    line = _run("make run", f"sqlite:///{tmp_path / 'saga.db'}", **{variable: str(listening)})

    assert f"port {listening} on 127.0.0.1 is in use" in line
    assert f"choose another with {variable}=" in line and line.endswith(" make run")


def test_make_run_passes_the_line_through(listening: int, tmp_path: Path) -> None:
    env = child_env(f"sqlite:///{tmp_path / 'saga.db'}", PORT=str(listening))
    done = subprocess.run(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, capture_output=True, text=True)

    assert done.returncode != 0
    assert f"make run: port {listening} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stderr


def _database_at(path: Path, revision: str | None, table: str = "sagas") -> str:
    with sqlite3.connect(path) as connection:
        if revision:
            connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            connection.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        connection.execute(f"CREATE TABLE {table} (id INTEGER)")
    return f"sqlite:///{path}"


@pytest.mark.parametrize("tool", ["make migrate", "make demo", "make soak"])
def test_a_database_migrated_by_code_this_one_does_not_know_is_told(tool: str, tmp_path: Path) -> None:
    line = _run(tool, _database_at(tmp_path / "ahead.db", "9999"))

    assert "is migrated to revision '9999', which this code does not know" in line


@pytest.mark.parametrize("tool", ["make migrate", "make run"])
def test_a_database_with_tables_but_no_revision_is_told(tool: str, tmp_path: Path) -> None:
    line = _run(tool, _database_at(tmp_path / "foreign.db", None))

    assert "holds tables but no Alembic revision" in line
