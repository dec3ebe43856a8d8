"""Fixtures: the three backends (embedded SQLite + fakeredis on loopback, real PostgreSQL + Redis, real MySQL or
MariaDB + Redis) and the engine.

Tests that take `backend` run once on each. Under CI=true an unreachable PostgreSQL, MySQL or Redis fails the run;
elsewhere the real-server tiers are skipped with the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from xdist.remote import Producer

from chalicelib.adapters import database, idempotency, saga_cache, step_functions
from chalicelib.adapters.tables import Base
from chalicelib.domain import catalogue
from chalicelib.settings import get_settings
from infra.engine.embedded_redis import embedded_redis
from infra.engine.local_engine import LocalEngine
from payment_provider import store as ledger_store
from tests.helpers import ROOT, throwaway_database, unavailable
from tests.server_scheduling import OneServerPerProcess

ADMIN_DATABASE_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
ADMIN_MYSQL_URL = os.environ.get("TEST_ADMIN_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""`gw0`, `gw1`... when pytest-xdist runs the suite on several processes (`make test` does); empty otherwise."""


def _redis_database_of_this_worker(url: str) -> str:
    """Each pytest-xdist worker flushes a Redis database of its own: the given one for gw0, the one below for gw1..."""
    if not XDIST_WORKER:
        return url
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number or 0) - int(XDIST_WORKER.removeprefix('gw'))}"


TEST_REDIS_URL = _redis_database_of_this_worker(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
"""EMF records on stdout would mix into what tests read there; tests of the metrics turn them on."""
TEST_RETRY_WAIT_SCALE = 0.001
"""The tests' Retry waits, a thousandth of the deployed ones. A throttle's waits keep the scale of the functions'
timeouts instead (`LocalEngine.slot_scale`: the template's, or a test's shorter one), as the slots they wait for."""
TEST_IDLE_SECONDS = 20.0
"""Idle environments are reclaimed after 20 s, not 300, so that the warm environments of the tests an xdist worker
has run do not hold database connections beside the other worker's (a cold start is a restore: milliseconds)."""
PROVIDER_LISTING_LAG_SECONDS = 3600
PROVIDER_SLOW_CAPTURE_SECONDS = 12
"""A `tok_slow_capture` charge commits this late: after its purchase's retries and compensation retries are spent."""
BACKENDS = ("embedded", "postgres", "mysql")
LOCALSTACK_TESTS = Path(__file__).resolve().parent / "localstack"


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str

    @property
    def tool_redis_url(self) -> str | None:
        """The REDIS_URL a tool run as a subprocess gets: none on the embedded backend, so that the tool starts
        its own embedded Redis, as it does on a fresh machine."""
        return None if self.name == "embedded" else self.redis_url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with throwaway_database(ADMIN_DATABASE_URL, "saga_test") as url:
        database.migrate(url)
        yield url


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway database on the MySQL/MariaDB server, dropped after the run with the provider's beside it."""
    with throwaway_database(ADMIN_MYSQL_URL, "saga_test", f"_{ledger_store.SCHEMA}") as url:
        database.migrate(url)
        yield url


@contextmanager
def _exclusive_lock(name: str) -> Iterator[None]:
    """A lock every pytest-xdist worker of this checkout shares (a file in the temporary directory)."""
    path = Path(tempfile.gettempdir()) / f"saga-{name}-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}.lock"
    with path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def packaged(request: pytest.FixtureRequest) -> Path:
    """`make package`'s output, built once for every test that reads it (package and LocalStack tiers).

    It is built in ./out, which every pytest-xdist worker shares: the first worker to need it builds it under a
    lock, and the others of the same run wait for it and read it."""
    out = ROOT / "out"
    run = getattr(request.config, "workerinput", {}).get("testrunuid")
    with _exclusive_lock("package"):
        built_for_this_run = out / f".built-for-{run}"
        if run is None or not built_for_this_run.exists():
            done = subprocess.run(["make", "package"], cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            if run is not None:
                built_for_this_run.touch()
    return out


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'saga.db'}"
    database.migrate(url)
    return url


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as error:
        unavailable("Redis", error)
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def embedded_redis_url() -> Iterator[str]:
    with embedded_redis() as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Session-scoped, so that pytest runs every test of one backend before the other's: the engine's worker
    processes are replaced whenever the data stores change, and each new worker pays a cold start."""
    return str(request.param)


@pytest.fixture
def backend(
    request: pytest.FixtureRequest,
    backend_name: str,
    sqlite_url: str,
    embedded_redis_url: str,
    engine: LocalEngine,
    provider_ledger_url: str,
) -> Iterator[Backend]:
    """A clean database and cache, seeded with the catalogue, wired into the settings."""
    # An indirect parametrize of `backend` would be ignored: the session's `backend_name` decides.
    assert not hasattr(request, "param"), "choose a test's backends with @pytest.mark.backends(...)"
    if backend_name == "embedded":
        chosen = Backend("embedded", sqlite_url, embedded_redis_url)
    else:
        url = request.getfixturevalue(f"{backend_name}_url")
        chosen = Backend(backend_name, url, request.getfixturevalue("real_redis_url"))
    settings = get_settings()
    saved = (settings.database_url, settings.redis_url, settings.allow_faults)
    settings.database_url, settings.redis_url, settings.allow_faults = chosen.database_url, chosen.redis_url, True
    _reset_adapters()
    _empty_database_and_seed()
    _empty_ledger(provider_ledger_url)
    saga_cache.get_redis().flushdb()
    yield chosen
    _let_running_executions_end()
    settings.database_url, settings.redis_url, settings.allow_faults = saved
    _reset_adapters()


def _let_running_executions_end(timeout_seconds: float = 60.0) -> None:
    """A test may start sagas it does not wait for; they must not write into the next test's emptied tables."""
    settings = get_settings()
    machines = [arn for arn in (settings.purchase_state_machine_arn, settings.return_state_machine_arn) if arn]
    deadline = time.monotonic() + timeout_seconds
    while machines and time.monotonic() < deadline:
        client = step_functions.sfn_client()
        running = [
            execution
            for arn in machines
            for execution in client.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        ]
        if not running:
            return
        time.sleep(0.05)


def _reset_adapters() -> None:
    database.reset_engine()
    saga_cache.reset_redis()
    idempotency.reset_idempotency()


def _empty_ledger(url: str) -> None:
    """The provider's ledger, emptied with our tables, so that each test's ledger check sees its own sagas."""
    ledger = ledger_store.open_ledger_database(url)
    with ledger.begin() as connection:
        for table in reversed(ledger_store.metadata.sorted_tables):
            connection.execute(table.delete())
    ledger.dispose()


def _empty_database_and_seed() -> None:
    """In one transaction, and the catalogue's rows in one statement a table (`catalogue.seed` looks for each
    product first: 15 statements, most of this fixture's time, every test)."""
    with database.UnitOfWork() as uow:
        for table in reversed(Base.metadata.sorted_tables):
            uow.session.execute(table.delete())
        uow.session.add_all([row for product in catalogue.SEED_PRODUCTS for row in catalogue.add_product(*product)])
        uow.commit()


@pytest.fixture(scope="session")
def provider_ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of the payment provider the engine starts: its own SQLite file, emptied with our tables."""
    return f"sqlite:///{tmp_path_factory.mktemp('provider') / 'ledger.db'}"


@pytest.fixture(scope="session")
def engine(provider_ledger_url: str) -> Iterator[LocalEngine]:
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    settings = get_settings()
    saved_timeout, settings.payment_provider_timeout_seconds = settings.payment_provider_timeout_seconds, 1.0
    with LocalEngine(
        retry_wait_scale=TEST_RETRY_WAIT_SCALE,
        idle_seconds=TEST_IDLE_SECONDS,
        provider_database_url=provider_ledger_url,
        provider_environment={
            "PROVIDER_LOST_RESPONSE_HOLD_SECONDS": "3",
            # Longer than any test: the search by saga never shows a test's charges, as a lagging real search may not.
            "PROVIDER_LISTING_LAG_SECONDS": str(PROVIDER_LISTING_LAG_SECONDS),
            "PROVIDER_SLOW_CAPTURE_SECONDS": str(PROVIDER_SLOW_CAPTURE_SECONDS),
        },
    ) as local_engine:
        yield local_engine
    settings.payment_provider_timeout_seconds = saved_timeout
    step_functions.reset_client()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--localstack",
        action="store_true",
        default=False,
        help="also collect tests/localstack (host-mode LocalStack; `make test-localstack` sets it up)",
    )
    parser.addoption(
        "--backends",
        default=",".join(BACKENDS),
        help=f"the backends that tests taking `backend` run on, comma-separated (default: {','.join(BACKENDS)})",
    )
    parser.addoption(
        "--split-by-server",
        action="store_true",
        default=False,
        help="with -n 2: each database server's tests on one process (tests/server_scheduling.py; make test's `alone`)",
    )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> OneServerPerProcess | None:
    return OneServerPerProcess(config, log) if config.getoption("--split-by-server") else None


@pytest.hookimpl(tryfirst=True)  # before pytest's fixture manager parametrizes `backend_name` with its params
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.backends("postgres")` runs a test that takes `backend` on those backends only: where the data
    layer does not decide its outcome (each such module says why), one backend is coverage enough."""
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend_name" in metafunc.fixturenames:
        unknown = sorted(set(marker.args) - set(BACKENDS))
        assert marker.args and not unknown, f"@pytest.mark.backends: unknown {unknown}; choose from {BACKENDS}"
        # As a parametrize mark, which pytest lets take the place of the fixture's own params (a direct
        # metafunc.parametrize would parametrize `backend_name` twice).
        metafunc.definition.add_marker(pytest.mark.parametrize("backend_name", marker.args, scope="session"))


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by backend (its fixtures' reordering)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--backends=embedded` (make check) deselects the other backends' runs, and says so in pytest's summary."""
    wanted = config.getoption("--backends").split(",")
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    kept, deselected = [], []
    for item in items:
        backend = _backend_of(item)
        (deselected if backend is not None and backend not in wanted else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    _order_by_function_timeout(items)


def _order_by_function_timeout(items: list[pytest.Item]) -> None:
    """Within each backend's run, the tests that shorten the functions' timeouts go last: each change of timeout is
    a configuration update that replaces every function's workers, and each replaced worker pays a cold start."""
    groups: list[list[pytest.Item]] = []
    for item in items:
        backend = _backend_of(item)
        if not groups or _backend_of(groups[-1][0]) != backend:
            groups.append([])
        groups[-1].append(item)
    items[:] = [item for group in groups for item in sorted(group, key=_shortens_timeouts)]


def _shortens_timeouts(item: pytest.Item) -> bool:
    return "short_timeouts" in getattr(item, "fixturenames", ())


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend_name") if callspec else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == LOCALSTACK_TESTS and not config.getoption("--localstack"):
        return True
    return None
