"""A Redis outage: sagas still complete, reads fall back to PostgreSQL, and the cache is right once Redis is back.

The test starts its own redis-server on a free loopback port and stops it; it never touches the machine's Redis.
It runs on PostgreSQL alone, the deployed default: Redis decides its outcome, and the database only answers the
reads Redis cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chalicelib.adapters import idempotency, saga_cache
from chalicelib.service import sagas
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from infra.engine.redis_server import PrivateRedis
from tests.conftest import Backend
from tests.helpers import assert_consistent, purchase, run_saga


@pytest.fixture
def private_redis(backend: Backend, tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    get_settings().redis_url = server.url  # the backend fixture restores the setting
    saga_cache.reset_redis()
    idempotency.reset_idempotency()
    try:
        yield server
    finally:
        server.stop()
        saga_cache.reset_redis()
        idempotency.reset_idempotency()


@pytest.mark.backends("postgres")
def test_sagas_complete_and_reads_fall_back_while_redis_is_down(
    backend: Backend, engine: LocalEngine, private_redis: PrivateRedis
) -> None:
    before = run_saga(engine, purchase())
    assert sagas.read_saga(before.saga_id)["status"] == "COMPLETED"  # type: ignore[index]

    private_redis.stop()
    during = [run_saga(engine, purchase(token=token)) for token in ("tok_visa", "tok_declined", "tok_flaky")]

    assert [run.status for run in during] == ["COMPLETED", "COMPENSATED", "COMPLETED"]
    assert all(sagas.read_saga(run.saga_id)["status"] == run.status for run in during)  # type: ignore[index]
    assert sagas.read_saga(before.saga_id)["status"] == "COMPLETED"  # type: ignore[index]
    assert_consistent()

    private_redis.start()
    # A Redis that comes back with what it held before (a replica, a snapshot) would hold older statuses.
    stale = redis.Redis.from_url(private_redis.url)
    for run in during:
        stale.set(saga_cache.STATUS_KEY.format(saga_id=run.saga_id), '{"status": "RUNNING", "version": 1}')
    for run in [before, *during]:
        assert sagas.read_saga(run.saga_id)["status"] == run.status  # type: ignore[index]
        assert saga_cache.cached_status(run.saga_id)["status"] == run.status  # type: ignore[index]
    after = run_saga(engine, purchase())
    assert after.status == "COMPLETED"
    assert_consistent()


@pytest.mark.backends("postgres")
def test_statuses_that_could_not_be_written_are_forgotten_once_redis_is_back(
    backend: Backend, private_redis: PrivateRedis
) -> None:
    """Two instances lose their writes while Redis is out: this one an older version, another (never invoked again)
    the newer one. Writing this one's version back would serve it stale; deleting the key makes readers go to the
    database."""
    private_redis.stop()
    saga_cache.write_through("saga-lost-writes", "RUNNING", 4)
    private_redis.start()
    snapshot = redis.Redis.from_url(private_redis.url)
    snapshot.set(saga_cache.STATUS_KEY.format(saga_id="saga-lost-writes"), '{"status": "RUNNING", "version": 3}')

    assert saga_cache.cached_status("saga-lost-writes") is None
    assert snapshot.exists(saga_cache.STATUS_KEY.format(saga_id="saga-lost-writes")) == 0

    saga_cache.write_through("saga-lost-writes", "COMPLETED", 5)
    assert saga_cache.cached_status("saga-lost-writes") == {"status": "COMPLETED", "version": 5}
