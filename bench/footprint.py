"""What one saga asks of the shared services, counted from the outside while the local engine runs sagas: database
transactions and the time the server spent executing them (PostgreSQL's `pg_stat_database`: `xact_commit`,
`xact_rollback`, `active_time`), Redis commands and their server time (`INFO commandstats` of a redis-server of
its own), and calls to the payment provider (its request log). docs/capacity.md's model multiplies these by a rate.

Each count is the difference across a phase of `count` sagas of one path, divided by `count`: the API's work
(the saga's row, its execution started) and every step's, in their worker processes, as deployed stacks run them
(faults off). The provider keeps its ledger in a database of its own, so its transactions are not counted as ours.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from chalicelib.adapters import database, idempotency, saga_cache, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest
from chalicelib.service import products, sagas
from chalicelib.settings import database_engine, get_settings
from infra.engine.local_engine import LocalEngine
from infra.engine.redis_server import PrivateRedis
from payment_provider import tokens

STATS_FLUSH_SECONDS = 11.0
"""PostgreSQL 15's backends report their statistics at most once a second while busy, and 10 s after going idle."""
PROVIDER_REQUEST = re.compile(r"payment_provider INFO (?:GET|POST) /\S+ \d{3} ")
SERVER_COMMANDS = {"info", "config"}
"""Commands this module sends itself to read and reset the statistics."""


@dataclass(frozen=True)
class Counters:
    transactions: int
    active_ms: float
    redis_calls: dict[str, int]
    redis_usec: int
    provider_requests: int


def run(count: int) -> dict[str, Any]:
    """Per saga, for a completed purchase and a completed return: transactions, their server time, Redis commands
    (total and by command), their server time, provider calls. {"skipped": why} off PostgreSQL."""
    url = get_settings().effective_database_url
    if database_engine(url) != "postgresql":
        return {"skipped": "counts transactions with pg_stat_database: needs DATABASE_URL on PostgreSQL"}
    with ExitStack() as stack:
        suffix = uuid.uuid4().hex[:8]  # runs at once on one server count apart
        own_url = stack.enter_context(_fresh_database(url, f"saga_footprint_{suffix}"))
        provider_url = stack.enter_context(_fresh_database(url, f"saga_footprint_provider_{suffix}"))
        server = PrivateRedis(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        server.start()
        stack.callback(server.stop)
        settings = get_settings()
        for name, value in (("database_url", own_url), ("redis_url", server.url), ("payment_provider_url", None)):
            stack.enter_context(mock.patch.object(settings, name, value))
        stack.enter_context(mock.patch.object(settings, "allow_faults", False))
        stack.callback(_reset_clients)
        _reset_clients()
        database.migrate()
        products.seed_catalogue()
        engine = stack.enter_context(LocalEngine(retry_wait_scale=0.01, provider_database_url=provider_url))
        counters = _Reader(url, own_url, server.url, engine)
        for _ in range(2):  # every worker starts and opens its connections before anything is counted
            _finish(engine, _return(_order_id(_finish(engine, _purchase()))))
        before = counters.read()
        orders = [_order_id(_finish(engine, _purchase())) for _ in range(count)]
        bought = counters.read()
        for order_id in orders:
            _finish(engine, _return(order_id))
        returned = counters.read()
        counters.close()
    return {
        "sagas_per_path": count,
        "purchase COMPLETED": _per_saga(before, bought, count),
        "return COMPLETED": _per_saga(bought, returned, count),
    }


def _reset_clients() -> None:
    database.reset_engine()
    saga_cache.reset_redis()
    idempotency.reset_idempotency()


@contextmanager
def _fresh_database(server_url: str, name: str) -> Iterator[str]:
    admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _Reader:
    """Reads the counters from connections of its own, which count in neither database nor Redis command."""

    def __init__(self, server_url: str, own_url: str, redis_url: str, engine: LocalEngine) -> None:
        self._stats = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        self._database = make_url(own_url).database
        self._redis = redis.Redis.from_url(redis_url)
        self._engine = engine

    def read(self) -> Counters:
        time.sleep(STATS_FLUSH_SECONDS)
        with self._stats.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT xact_commit + xact_rollback, active_time FROM pg_stat_database WHERE datname = :name"
                ).bindparams(name=self._database)
            ).one()
        commands = {
            name.removeprefix("cmdstat_"): stats
            for name, stats in self._redis.info("commandstats").items()
            if name.removeprefix("cmdstat_") not in SERVER_COMMANDS
        }
        provider = self._engine.provider
        lines = provider.output().splitlines() if provider else []
        if len(lines) >= 200:
            raise RuntimeError("the provider's output outgrew the kept tail: count fewer sagas per path")
        return Counters(
            transactions=int(row[0]),
            active_ms=float(row[1]),
            redis_calls={name: int(stats["calls"]) for name, stats in commands.items()},
            redis_usec=sum(int(stats["usec"]) for stats in commands.values()),
            provider_requests=sum(1 for line in lines if PROVIDER_REQUEST.search(line)),
        )

    def close(self) -> None:
        self._stats.dispose()
        self._redis.close()


def _per_saga(before: Counters, after: Counters, count: int) -> dict[str, Any]:
    by_command = {
        name: (calls - before.redis_calls.get(name, 0)) / count
        for name, calls in sorted(after.redis_calls.items())
        if calls > before.redis_calls.get(name, 0)
    }
    return {
        "db_transactions": (after.transactions - before.transactions) / count,
        "db_active_ms": (after.active_ms - before.active_ms) / count,
        "redis_commands": sum(by_command.values()),
        "redis_commands_by_name": by_command,
        "redis_server_ms": (after.redis_usec - before.redis_usec) / 1000 / count,
        "provider_calls": (after.provider_requests - before.provider_requests) / count,
    }


def _finish(engine: LocalEngine, request: SagaRequest) -> str:
    saga = sagas.start_saga(request, step_functions.start_execution)
    engine.wait(str(saga.execution_arn))
    with database.UnitOfWork() as uow:
        status = uow.session.get_one(Saga, saga.id).status
    if status != "COMPLETED":
        raise RuntimeError(f"saga {saga.id} ended {status}: the footprint counts completed sagas only")
    return saga.id


def _order_id(saga_id: str) -> str:
    with database.UnitOfWork() as uow:
        return str(uow.session.get_one(Saga, saga_id).result["order_id"])


def _return(order_id: str) -> ReturnRequest:
    return ReturnRequest(customer_id="footprint", order_id=order_id, quantity=1, reason="footprint")


def _purchase() -> PurchaseRequest:
    return PurchaseRequest(customer_id="footprint", sku="SKU-KEYBOARD", quantity=1, payment_token=tokens.APPROVES)
