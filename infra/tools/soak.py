"""`make soak`: many sagas at once on real PostgreSQL or MySQL and Redis, each step in a worker process, with
seeded random faults (failures, transient errors, timeouts that kill the worker, crashes after a commit),
duplicate deliveries, a payment provider that behaves as a real one does (it answers 503, loses answers, is slow,
lags its search by saga, commits some captures late and forgets idempotency keys), a Redis restart and dropped
database connections. Once every saga is final, an operator retries each FAILED one, its keys at the provider
expired by then; then every invariant is checked, the provider's ledger against our records included, and every
sink is searched for the run's (unique) payment tokens. The last line is the verdict.
Unless LOCAL_LAMBDA_TIMEOUT says otherwise, every function times out after 5 s, half the template's 10 s: a
throttle's Retry waits shrink by that same half (the slots are held half as long), the other waits 50-fold.

    make soak SOAK_ARGS="--count 300 --concurrency 12 --seed 7"

It uses DATABASE_URL when set (a database it may empty; postgresql+pg8000:// or mysql+pymysql://), else a
`saga_soak` database on the PostgreSQL of 127.0.0.1, and a redis-server of its own, which it restarts mid-run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from chalicelib.adapters import database, idempotency, payment_provider, saga_cache, step_functions
from chalicelib.adapters.tables import AuditEvent, Base, Saga
from chalicelib.domain import catalogue
from chalicelib.domain.contracts import (
    PURCHASE_STEPS,
    RETURN_STEPS,
    PurchaseRequest,
    ReturnRequest,
    SagaRequest,
)
from chalicelib.observability import telemetry
from chalicelib.service import recovery, sagas
from chalicelib.service.executions import boto3_step_functions, execution_name
from chalicelib.settings import get_settings
from infra.engine import preflight
from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import DuplicateDeliveries
from infra.engine.redis_server import PrivateRedis
from infra.tools import canary, invariants
from payment_provider import store as ledger_store

T = TypeVar("T")
LOCAL_POSTGRES = "postgresql+pg8000://postgres@127.0.0.1:5432/"
SOAK_SKUS = ("SKU-SOAK-A", "SKU-SOAK-B")
TOKENS = (
    *("tok_visa",) * 6,
    *("tok_flaky", "tok_declined", "tok_lost_response") * 2,
    "tok_slow_capture",
)
APPROVING = ("tok_visa_", "tok_flaky_", "tok_lost_response_")
"""The tokens whose charge ends approved, however many attempts it takes."""
FAULTS = ("fail", "transient:1", "transient:2", "timeout:1", "crash:1", "crash:2")
"""Timeouts and crashes hit worker processes as they would Lambda's: killed at the timeout, dead after a commit."""
SOAK_FUNCTION_TIMEOUT = 5.0
"""Room for a step's real work on a loaded machine: a 60-saga soak at 16 at a time, on this 2-core machine shared
with other work, saw a p99 of 1,967 ms with 2 s (work killed by its timeout, fault-free purchases compensated);
the soak prints the p99 and the longest of each run. An injected `timeout` holds its slot this long."""
RETRY_WAIT_SCALE = 0.02
DURATION = re.compile(r"REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms")
SOAK_PROVIDER_TIMEOUT = 0.5


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    orders: list[tuple[str, str]] = field(default_factory=list)
    """(order id, the customer who bought it) of every completed purchase: a return names both."""
    saga_ids: list[str] = field(default_factory=list)
    fault_free_purchases: list[str] = field(default_factory=list)
    """Purchases with no fault injected whose token approves: each must end COMPLETED."""
    tokens: set[str] = field(default_factory=set)
    logs: list[str] = field(default_factory=list)
    done: int = 0

    def log(self, function_name: str, text: str) -> None:
        """The functions' log streams, searched for payment tokens at the end."""
        with self.lock:
            self.logs.append(text)


def _request(rng: random.Random, tally: Tally, fault_rate: float, tag: str) -> SagaRequest:
    faults: dict[str, str] = {}
    with tally.lock:
        orders = list(tally.orders)
    is_return = orders and rng.random() < 0.3
    steps = RETURN_STEPS if is_return else PURCHASE_STEPS
    if rng.random() < fault_rate:
        step = rng.choice(steps)
        faults[step] = rng.choice(FAULTS)
        with tally.lock:
            tally.faults[f"{step}={faults[step]}"] += 1
    if is_return:
        order_id, customer_id = rng.choice(orders)
        return ReturnRequest(
            customer_id=customer_id, order_id=order_id, quantity=rng.randint(1, 2), reason="soak", faults=faults
        )
    token = f"{rng.choice(TOKENS)}_{tag}"  # unique: the canary search at the end looks for each one
    with tally.lock:
        tally.tokens.add(token)
    return PurchaseRequest(
        customer_id=f"soak-{rng.randint(1, 50)}",
        sku=rng.choice(SOAK_SKUS),
        quantity=rng.randint(1, 3),
        payment_token=token,
        faults=faults,
    )


# Seeded random generators below choose chaos, not secrets.
def _run_one(engine: LocalEngine, number: int, seed: int, tally: Tally, fault_rate: float) -> None:
    rng = random.Random(seed * 100_003 + number)  # noqa: S311  # nosec B311
    request = _request(rng, tally, fault_rate, f"{seed}n{number}")
    key = f"soak-{seed}-{number}"
    # A dropped connection may cut a start short; the same idempotency key makes starting again safe.
    saga = _retrying(lambda: sagas.start_saga(request, step_functions.start_execution, idempotency_key=key))
    engine.wait(str(saga.execution_arn), timeout_seconds=600, poll_seconds=0.05)
    status, result = _retrying(lambda: _outcome(saga.id))
    with tally.lock:
        tally.statuses[status] += 1
        tally.saga_ids.append(saga.id)
        if isinstance(request, PurchaseRequest) and not request.faults and request.payment_token.startswith(APPROVING):
            tally.fault_free_purchases.append(saga.id)
        if "order_id" in result and isinstance(request, PurchaseRequest):
            tally.orders.append((result["order_id"], request.customer_id))
        tally.done += 1


def _outcome(saga_id: str) -> tuple[str, dict[str, Any]]:
    with database.UnitOfWork() as uow:
        final = uow.session.get_one(Saga, saga_id)
        return final.status, dict(final.result)


def _retrying(call: Callable[[], T], attempts: int = 5) -> T:
    """The soak's own database calls ride out a dropped connection, as the state machine's Retry does for steps."""
    for attempt in range(attempts):
        try:
            return call()
        except (DBAPIError, ConnectionError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _progress(tally: Tally, count: int, started: float, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        _draw(tally, count, started)
    _draw(tally, count, started)
    print(file=sys.stderr)


def _draw(tally: Tally, count: int, started: float) -> None:
    done = tally.done
    filled = int(30 * done / count)
    rate = done / max(time.monotonic() - started, 1e-9)
    bar = "#" * filled + "." * (30 - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{count} sagas, {rate:.1f}/s")
    sys.stderr.flush()


def _chaos(tally: Tally, count: int, private_redis: PrivateRedis, stop: threading.Event, log: list[str]) -> None:
    """At a third of the run restart Redis; at half and two thirds drop every database connection."""
    plan = [(count // 3, "redis"), (count // 2, "database"), (2 * count // 3, "database")]
    for threshold, what in plan:
        while tally.done < threshold:
            if stop.wait(0.05):
                return
        if what == "redis":
            private_redis.stop()
            time.sleep(0.5)
            private_redis.start()
            log.append(f"restarted Redis after {tally.done} sagas")
        else:
            dropped = _drop_database_connections()
            log.append(f"dropped {dropped} database connection(s) after {tally.done} sagas")


def _drop_database_connections() -> int:
    """Every other connection to the database (and, on MySQL, to the provider's database beside it)."""
    engine = database.get_engine()
    with engine.connect() as connection:
        if engine.dialect.name != "mysql":
            dropped = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
            return int(dropped or 0)
        ledger = ledger_store.schema_name(engine.url.render_as_string(hide_password=False))
        others = connection.execute(
            text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db IN (DATABASE(), :ledger) AND id <> CONNECTION_ID()"
            ),
            {"ledger": ledger},
        ).scalars()
        killed = 0
        for connection_id in list(others):
            with contextlib.suppress(DBAPIError):  # it may have ended meanwhile
                connection.execute(text(f"KILL {int(connection_id)}"))
                killed += 1
        return killed


def _histories(saga_id: str, saga_type: str, executions: int) -> dict[str, list[dict[str, Any]]]:
    """The history of every execution the saga was given, by name: a start whose ARN write was cut by a dropped
    connection leaves no ARN in the row, and the reconciler or a retry may have given it more than one."""
    histories = {}
    for number in range(1, executions + 1):
        name = execution_name(saga_id, number)
        arn = step_functions.execution_arn_for(saga_type, name)
        if step_functions.execution_status(arn) is not None:
            histories[name] = step_functions.execution_history(arn)
    return histories


def check(tally: Tally) -> list[str]:
    """Every invariant of docs/design.md §4, plus: every saga final, every attempt audited, cache = database."""
    with database.UnitOfWork() as uow:
        problems = invariants.violations(uow.session, payment_provider.provider_client())
        unfinished = uow.session.scalar(
            select(func.count()).select_from(Saga).where(Saga.status.in_(("RUNNING", "COMPENSATING")))
        )
        if unfinished:
            problems.append(f"{unfinished} saga(s) not final")
        runs = {
            saga_id: (kind, count)
            for saga_id, kind, count in uow.session.execute(select(Saga.id, Saga.type, Saga.executions))
        }
        versions = {s.id: (s.status, s.version) for s in uow.session.scalars(select(Saga))}
        for saga_id in tally.saga_ids:
            problems += invariants.unaudited_attempts(uow.session, saga_id, _histories(saga_id, *runs[saga_id]))
        lost_to_the_provider = _lost_to_the_provider(uow.session)
    problems += [
        f"saga {saga_id}: a fault-free purchase ended {versions[saga_id][0]}"
        for saga_id in tally.fault_free_purchases
        if versions[saga_id][0] != "COMPLETED" and saga_id not in lost_to_the_provider
    ]
    for saga_id in tally.saga_ids:
        cached = saga_cache.cached_status(saga_id)
        if cached is not None and (cached["status"], cached["version"]) != versions[saga_id]:
            problems.append(f"saga {saga_id}: cache says {cached}, database {versions[saga_id]}")
    return problems


def _count_lost_to_the_provider(tally: Tally) -> int:
    with database.UnitOfWork() as uow:
        return len(_lost_to_the_provider(uow.session) & set(tally.fault_free_purchases))


def _lost_to_the_provider(session: Session) -> set[str]:
    """Purchases whose payment step never succeeded because the provider kept failing it: every retry met a 503, a
    lost answer or a capture it held past them (its chaos, `--provider-*`). The provider's doing, not ours: they
    may end compensated, or FAILED and then retried, with nothing held (the ledger check says so)."""
    unavailable = select(AuditEvent.saga_id).where(
        AuditEvent.step == "process_payment", AuditEvent.error_type == "PaymentProviderUnavailable"
    )
    paid = select(AuditEvent.saga_id).where(AuditEvent.step == "process_payment", AuditEvent.status == "SUCCEEDED")
    return set(session.scalars(unavailable.except_(paid)))


def token_leaks(tally: Tally, private_redis: PrivateRedis) -> list[str]:
    """Every payment token of the run found outside its saga's row (docs/design.md §3, Access)."""
    settings = get_settings()
    ledger = ledger_store.open_ledger_database(settings.effective_database_url)
    with database.UnitOfWork() as uow:
        rows = list(canary.database_rows(uow.session, ledger))
    ledger.dispose()
    sinks = {
        "Redis": list(canary.redis_contents(redis.Redis.from_url(private_redis.url))),
        "tables and the provider's ledger": rows,
        "executions": list(canary.executions()),
        "log lines and EMF records": tally.logs,
    }
    return [f"payment token found in {leak}" for leak in canary.leaks(tally.tokens, sinks)]


def _prepare_database(url: str | None) -> str:
    if url:
        preflight.check_database_url(url)
        preflight.check_database_answers(url)
        preflight.check_migrations(url)
        return url
    preflight.check_database_answers(LOCAL_POSTGRES + "postgres")
    admin = create_engine(LOCAL_POSTGRES + "postgres", isolation_level="AUTOCOMMIT", hide_parameters=True)
    with admin.connect() as connection:
        connection.execute(text('DROP DATABASE IF EXISTS "saga_soak" WITH (FORCE)'))
        connection.execute(text('CREATE DATABASE "saga_soak"'))
    admin.dispose()
    return LOCAL_POSTGRES + "saga_soak"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of sagas with an injected fault")
    parser.add_argument("--duplicate-rate", type=float, default=0.1, help="share of deliveries made twice")
    parser.add_argument("--provider-fault-rate", type=float, default=0.05, help="share of provider calls answered 503")
    parser.add_argument(
        "--provider-lost-rate", type=float, default=0.05, help="share of provider calls whose answer is lost"
    )
    parser.add_argument("--provider-latency-ms", type=float, default=20, help="latency the provider adds")
    parser.add_argument(
        "--provider-listing-lag",
        type=float,
        default=5,
        help="seconds before a charge shows in the provider's search by saga",
    )
    parser.add_argument(
        "--provider-slow-capture-rate", type=float, default=0.01, help="share of charges that commit late"
    )
    parser.add_argument(
        "--provider-slow-capture-seconds",
        type=float,
        default=6,
        help="how late they commit (and every tok_slow_capture charge): past the retries of the step and of its "
        "compensation, so that the saga ends FAILED and the operator's retry refunds it",
    )
    parser.add_argument(
        "--provider-key-ttl",
        type=float,
        default=30,
        help="seconds the provider remembers an idempotency key (Stripe: 86400); longer than the listing lag",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.ERROR)  # dropped connections and injected faults log tracebacks the soak expects
    telemetry.quiet()

    settings = get_settings()
    settings.database_url = _prepare_database(settings.database_url)
    settings.allow_faults = True
    # An injected timeout holds a worker until the function's timeout: a short one keeps the soak moving, and
    # the provider's client gives up on a lost answer well before it.
    settings.local_lambda_timeout = settings.local_lambda_timeout or SOAK_FUNCTION_TIMEOUT
    settings.payment_provider_timeout_seconds = SOAK_PROVIDER_TIMEOUT
    with tempfile.TemporaryDirectory() as directory:
        private_redis = PrivateRedis(Path(directory))
        private_redis.start()
        settings.redis_url = private_redis.url
        database.reset_engine()
        saga_cache.reset_redis()
        idempotency.reset_idempotency()
        database.migrate()
        with database.get_engine().begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                if table.name != "alembic_version":
                    connection.execute(table.delete())
        ledger = ledger_store.open_ledger_database(settings.effective_database_url)
        with ledger.begin() as connection:  # the provider's own schema: emptied too, or it holds older runs' money
            for table in reversed(ledger_store.metadata.sorted_tables):
                connection.execute(table.delete())
        ledger.dispose()
        with database.UnitOfWork() as uow:
            for sku in SOAK_SKUS:
                uow.session.add_all(catalogue.add_product(sku, f"Soak {sku}", 1_500, 2 * args.count))
            uow.commit()
        try:
            return _soak(args, private_redis)
        finally:
            private_redis.stop()


def _soak(args: argparse.Namespace, private_redis: PrivateRedis) -> int:
    tally = Tally()
    chaos_log: list[str] = []
    rng = random.Random(args.seed)  # noqa: S311  # nosec B311
    print(
        f"soak: {args.count} sagas, {args.concurrency} at a time, seed {args.seed}, fault rate {args.fault_rate}, "
        f"duplicate rate {args.duplicate_rate}, provider 503s {args.provider_fault_rate}, lost answers "
        f"{args.provider_lost_rate}, +{args.provider_latency_ms:g} ms, search lag {args.provider_listing_lag:g} s, "
        f"late captures {args.provider_slow_capture_rate} (+{args.provider_slow_capture_seconds:g} s), "
        f"keys kept {args.provider_key_ttl:g} s; "
        f"{preflight.describe_database(get_settings().effective_database_url)} + a private Redis",
        flush=True,
    )
    stop = threading.Event()
    started = time.monotonic()
    duplicates = DuplicateDeliveries(args.duplicate_rate, rng)
    provider_chaos = {
        "PROVIDER_FAULT_RATE": str(args.provider_fault_rate),
        "PROVIDER_LOST_RATE": str(args.provider_lost_rate),
        "PROVIDER_LATENCY_MS": str(args.provider_latency_ms),
        "PROVIDER_LOST_RESPONSE_HOLD_SECONDS": str(2 * SOAK_PROVIDER_TIMEOUT),
        "PROVIDER_SEED": str(args.seed),
        "PROVIDER_LISTING_LAG_SECONDS": str(args.provider_listing_lag),
        "PROVIDER_SLOW_CAPTURE_RATE": str(args.provider_slow_capture_rate),
        "PROVIDER_SLOW_CAPTURE_SECONDS": str(args.provider_slow_capture_seconds),
        "PROVIDER_KEY_TTL_SECONDS": str(args.provider_key_ttl),
    }
    engine = LocalEngine(
        retry_wait_scale=RETRY_WAIT_SCALE,
        duplicates=duplicates,
        provider_environment=provider_chaos,
        log_sink=tally.log,
    )
    with engine:
        watchers = [
            threading.Thread(target=_progress, args=(tally, args.count, started, stop)),
            threading.Thread(target=_chaos, args=(tally, args.count, private_redis, stop, chaos_log)),
        ]
        for watcher in watchers:
            watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                list(pool.map(lambda n: _run_one(engine, n, args.seed, tally, args.fault_rate), range(args.count)))
        finally:
            stop.set()
            for watcher in watchers:
                watcher.join()
        elapsed = time.monotonic() - started
        retried = _operator_retries(tally, args.provider_key_ttl)
        problems = check(tally) + token_leaks(tally, private_redis)
    retries = _retries()
    print(f"final statuses: {dict(sorted(tally.statuses.items()))}")
    print(f"faults injected: {sum(tally.faults.values())} ({dict(sorted(tally.faults.items()))})")
    print(
        f"retries: {retries}; duplicate deliveries: {duplicates.delivered_twice}, absorbed with the same answer: "
        f"{duplicates.absorbed}"
    )
    print(f"chaos: {'; '.join(chaos_log) or 'none'}")
    print(f"operator retries of FAILED sagas, their provider keys expired: {retried}")
    print(f"throughput: {args.count / elapsed:.1f} sagas/s ({elapsed:.1f} s)")
    print(
        f"fault-free purchases: {len(tally.fault_free_purchases)} ({_count_lost_to_the_provider(tally)} of them "
        f"lost their payment to the provider's chaos); step durations: {_durations(tally.logs)}; "
        f"timeouts {get_settings().local_lambda_timeout:g} s, throttle waits x{engine.slot_scale():g}, "
        f"other waits x{RETRY_WAIT_SCALE:g}"
    )
    for problem in problems[:50]:
        print(f"VIOLATION: {problem}")
    verdict = "PASS" if not problems else f"FAIL ({len(problems)} violations)"
    print(f"canary: {len(tally.tokens)} unique payment tokens searched for in Redis, tables, executions and logs")
    print(f"soak {verdict}: {args.count} sagas, every invariant {'held' if not problems else 'checked'}")
    return 0 if not problems else 1


def _operator_retries(tally: Tally, key_ttl_seconds: float) -> dict[str, int]:
    """Once the provider has forgotten the run's keys, retry every FAILED saga once, as an operator would after a
    fix, and wait until each is final: a compensation must then learn what the provider holds without a replay.
    Those whose injected fault fails them for good end FAILED again."""
    time.sleep(key_ttl_seconds)
    with database.UnitOfWork() as uow:
        failed = list(uow.session.scalars(select(Saga.id).where(Saga.status == "FAILED")))
    outcomes: Counter[str] = Counter()
    for saga_id in failed:
        _retrying(partial(recovery.retry, saga_id, boto3_step_functions()))
    for saga_id in failed:
        outcomes[_final_status(saga_id)] += 1
    with tally.lock:
        tally.statuses.subtract(Counter({"FAILED": len(failed)}))
        tally.statuses.update(outcomes)
    return dict(sorted(outcomes.items()))


def _final_status(saga_id: str, timeout_seconds: float = 600) -> str:
    deadline = time.monotonic() + timeout_seconds
    while True:
        status, _ = _retrying(partial(_outcome, saga_id))
        if status not in ("RUNNING", "COMPENSATING") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def _durations(logs: list[str]) -> str:
    """The durations of the invocations that ended on their own (REPORT lines without a Status): the timeout must
    leave real work room under this load."""
    durations = sorted(
        float(found.group(1))
        for text in logs
        for line in text.splitlines()
        if "Status:" not in line and (found := DURATION.match(line))  # Lambda ended the others
    )
    if len(durations) < 2:
        return "none reported"
    p99 = statistics.quantiles(durations, n=100)[98]
    return f"p50 {statistics.median(durations):.0f} ms, p99 {p99:.0f} ms, longest {durations[-1]:.0f} ms"


def _retries() -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.attempt > 1)) or 0)


if __name__ == "__main__":
    sys.exit(preflight.run("make soak", main))
