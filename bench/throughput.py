"""Saga throughput and end-to-end latency on the local engine (every step in a worker process), against the
engine's own floor.

The floor runs the same definitions with no-op handlers, in worker processes of the same runtime, that take the
same path (a declined payment still raises PaymentDeclined) and touch no database: what the interpreter and the
runtime cost by themselves.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import lambda_runtime
from bench.stats import summary_ms
from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain.catalogue import add_product
from chalicelib.domain.contracts import PurchaseRequest
from chalicelib.service import sagas
from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import HandlerFor
from payment_provider import tokens

HOT_SKU = "SKU-HOT"
POLL_SECONDS = 0.02
"""How often each client asks whether its saga ended; latencies are accurate to about this much."""
SCENARIOS = {
    "purchase COMPLETED": tokens.APPROVES,
    "purchase COMPENSATED (declined)": tokens.DECLINES,
}


def _noop_handlers(token: str) -> HandlerFor:
    def handler_for(handler: str) -> str:
        if token == tokens.DECLINES and handler.startswith("functions.process_payment."):
            return "bench.noop_handlers.decline"
        return "bench.noop_handlers.succeed"

    return handler_for


def _ours(engine: LocalEngine, token: str) -> float:
    request = PurchaseRequest(customer_id="tp", sku="SKU-BENCH", quantity=1, payment_token=token)
    started = time.perf_counter()
    saga = sagas.start_saga(request, step_functions.start_execution)
    engine.wait(str(saga.execution_arn), timeout_seconds=300, poll_seconds=POLL_SECONDS)
    return time.perf_counter() - started


def _floor(engine: LocalEngine, token: str) -> float:
    saga_id = uuid.uuid4().hex
    started = time.perf_counter()
    execution_input = {"saga_id": saga_id, "correlation_id": saga_id, "failures": {}}
    arn = step_functions.start_execution("purchase", saga_id, execution_input)
    engine.wait(arn, timeout_seconds=300, poll_seconds=POLL_SECONDS)
    return time.perf_counter() - started


def _load(run_one: Callable[[], float], sagas_count: int, concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(lambda _: run_one(), range(sagas_count)))
    elapsed = time.perf_counter() - started
    return {"sagas_per_second": sagas_count / elapsed, **summary_ms(latencies)}


CONCURRENCIES = (1, 2, 4, 8)
HOT_RACERS = 16


def run(
    sagas_count: int, concurrencies: tuple[int, ...] = CONCURRENCIES, hot_racers: int = HOT_RACERS
) -> dict[str, Any]:
    """Per scenario and concurrency: ours and the floor on worker processes, sagas/s and p50/p99, and our share
    of the time; then a hot product; then the peak memory of the engine and its workers."""
    results: dict[str, Any] = {}
    workers_peak_mb = 0.0
    for scenario, token in SCENARIOS.items():
        # The declined path is measured at the lowest and highest concurrency only.
        chosen = concurrencies if token == tokens.APPROVES else (min(concurrencies), max(concurrencies))
        for concurrency in sorted(set(chosen)):
            with LocalEngine(log_sink=lambda *_: None) as engine:
                _load(functools.partial(_ours, engine, token), concurrency, concurrency)  # warm the workers
                ours = _load(functools.partial(_ours, engine, token), sagas_count, concurrency)
                workers_peak_mb = max(workers_peak_mb, lambda_runtime.peak_worker_memory_mb(os.getpid()))
            with LocalEngine(handler_for=_noop_handlers(token), log_sink=lambda *_: None) as engine:
                _load(functools.partial(_floor, engine, token), concurrency, concurrency)
                floor = _load(functools.partial(_floor, engine, token), sagas_count, concurrency)
            results[f"{scenario}, concurrency {concurrency}"] = {
                "ours": ours,
                "engine_floor": floor,
                "our_share_of_p50": 1 - floor["p50_ms"] / ours["p50_ms"],
                "ours_to_floor_sagas_per_second": ours["sagas_per_second"] / floor["sagas_per_second"],
            }
    with LocalEngine(log_sink=lambda *_: None) as engine:
        results["hot product"] = hot_product(engine, sagas_count, hot_racers)
    results["peak_rss_mb"] = {
        "engine": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers": workers_peak_mb,
    }
    return results


def hot_product(engine: LocalEngine, sagas_count: int, racers: int) -> dict[str, Any]:
    """`racers` clients at once, every saga buying one unit of the same product (stock for all of them)."""
    with database.UnitOfWork() as uow:
        for row in add_product(HOT_SKU, "Hot product", 1_000, 10 * sagas_count + 100):
            uow.session.merge(row)
        uow.commit()
    outcomes: Counter[str] = Counter()

    def one() -> float:
        request = PurchaseRequest(customer_id="hot", sku=HOT_SKU, quantity=1, payment_token=tokens.APPROVES)
        started = time.perf_counter()
        saga = sagas.start_saga(request, step_functions.start_execution)
        engine.wait(str(saga.execution_arn), timeout_seconds=300, poll_seconds=POLL_SECONDS)
        elapsed = time.perf_counter() - started
        with database.UnitOfWork() as uow:
            outcomes[uow.session.get_one(Saga, saga.id).status] += 1
        return elapsed

    _load(one, racers, racers)  # warm
    outcomes.clear()
    measured = _load(one, sagas_count, racers)
    return {
        **measured,
        "racers": racers,
        "outcomes": dict(outcomes),
        "not_completed": sagas_count - outcomes["COMPLETED"],
    }


if __name__ == "__main__":
    print(json.dumps(run(10), indent=1))
