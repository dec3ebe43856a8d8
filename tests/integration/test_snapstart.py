"""SnapStart's hooks, run as the runtime runs them (snapshot_restore_py's registry: before-snapshot hooks in the
reverse order of registration, after-restore hooks in it): nothing opened before the snapshot is used after a
restore, secrets are read again, and each restored environment draws its own random numbers."""

from __future__ import annotations

import random
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import snapshot_restore_py
from sqlalchemy import text

from chalicelib.adapters import database, payment_provider, saga_cache
from chalicelib.entrypoints import snapstart
from chalicelib.service import sagas
from chalicelib.settings import get_settings
from functions import reserve_stock
from tests.conftest import Backend
from tests.helpers import ROOT, child_env, purchase

CONTEXT = SimpleNamespace(get_remaining_time_in_millis=lambda: 30_000, aws_request_id="snapstart")


def _snapshot() -> None:
    for function, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
        function(*args, **kwargs)


def _restore() -> None:
    for function, args, kwargs in snapshot_restore_py.get_after_restore():
        function(*args, **kwargs)


def _new_saga() -> str:
    return sagas.start_saga(purchase(), lambda *_: "arn:aws:states:us-east-1:000000000000:execution:local:x").id


def _database_session_id(backend: Backend) -> Any:
    if backend.name != "postgres":
        return id(database.get_engine())
    with database.UnitOfWork() as uow:
        return uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _open_database_sessions() -> set[int]:
    with database.UnitOfWork() as uow:
        return set(uow.session.execute(text("SELECT pid FROM pg_stat_activity")).scalars())


def test_the_step_handlers_register_the_hooks_the_runtime_runs() -> None:
    assert reserve_stock.lambda_handler
    assert snapstart.before_snapshot in [function for function, _, _ in snapshot_restore_py.get_before_snapshot()]
    assert snapstart.after_restore in [function for function, _, _ in snapshot_restore_py.get_after_restore()]


def test_after_a_restore_a_step_runs_on_new_connections_and_the_old_ones_are_closed(backend: Backend) -> None:
    reserve_stock.lambda_handler({"saga_id": _new_saga()}, CONTEXT)
    database_before = _database_session_id(backend)
    redis_before = saga_cache.get_redis()
    assert redis_before is not None
    redis_client_before = redis_before.client_id()

    _snapshot()
    _restore()
    answer = reserve_stock.lambda_handler({"saga_id": _new_saga()}, CONTEXT)

    assert answer["quantity"] == 2
    assert _database_session_id(backend) != database_before
    redis_after = saga_cache.get_redis()
    assert redis_after is not None and redis_after is not redis_before
    assert redis_after.client_id() != redis_client_before
    if backend.name == "postgres":
        assert database_before not in _open_database_sessions()
        assert redis_client_before not in {client["id"] for client in redis_after.client_list()}


def test_after_a_restore_the_secrets_are_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "payment_provider_url", "http://127.0.0.1:9")
    monkeypatch.setattr(settings, "payment_provider_api_key_secret_arn", "arn:provider-key")
    reads: list[str] = []
    monkeypatch.setattr(
        "chalicelib.settings._secret_text", lambda arn: reads.append(arn) or f"key-{len(reads)}", raising=True
    )
    payment_provider.reset_client()

    first = payment_provider.provider_client()
    assert payment_provider.provider_client() is first
    _snapshot()
    _restore()
    again = payment_provider.provider_client()

    assert reads == ["arn:provider-key", "arn:provider-key"]
    assert again is not first
    payment_provider.reset_client()


def test_each_restored_environment_draws_its_own_random_numbers() -> None:
    drawn = []
    for _ in range(2):
        random.seed(18)  # the generator's state as the snapshot holds it
        _restore()
        drawn.append(random.getrandbits(128))

    assert drawn[0] != drawn[1]


PRIMED_DRIVERS = """
import sys
from chalicelib.adapters import database
database.prime()
print(",".join(sorted(name for name in ("pg8000", "pymysql", "sqlite3") if name in sys.modules)))
"""


@pytest.mark.parametrize(
    ("environment", "driver"),
    [
        ({"DATABASE_URL": "mysql+pymysql://app@db.internal:3306/shop"}, "pymysql"),
        ({"DATABASE_URL": "postgresql+pg8000://app@db.internal:5432/shop"}, "pg8000"),
        ({"DATABASE_HOST": "proxy.internal", "DATABASE_ENGINE": "mysql"}, "pymysql"),
        ({"DATABASE_HOST": "proxy.internal", "DATABASE_ENGINE": "postgresql"}, "pg8000"),
    ],
    ids=["mysql-url", "postgres-url", "mysql-deployed", "postgres-deployed"],
)
def test_priming_loads_the_configured_engines_driver_not_the_other(environment: dict[str, str], driver: str) -> None:
    """Before a snapshot, the driver the first transaction needs is imported; the other engine's is not (a
    MySQL stack's snapshot holding pg8000 would pay for it on every restore, and still import PyMySQL later)."""
    deployed = {"DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db"}
    env = child_env("", **(deployed if "DATABASE_HOST" in environment else {}), **environment)
    if "DATABASE_URL" not in environment:
        env.pop("DATABASE_URL")
    done = subprocess.run(
        [sys.executable, "-c", PRIMED_DRIVERS], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.strip().split(",")
    other = {"pymysql": "pg8000", "pg8000": "pymysql"}[driver]
    assert driver in loaded and other not in loaded
