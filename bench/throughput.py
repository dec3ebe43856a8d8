"""Saga throughput and end-to-end latency on the local engine, against the engine's own floor.

The floor runs the same definitions with no-op handlers that take the same path (a declined payment still
raises PaymentDeclined) and no database: what the interpreter costs by itself.
"""

from __future__ import annotations

import functools
import json
import resource
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.stats import summary_ms
from chalicelib.adapters import step_functions
from chalicelib.domain import simulated_provider
from chalicelib.domain.contracts import PurchaseRequest
from chalicelib.domain.errors import PaymentDeclined
from chalicelib.service import sagas
from infra.local_engine import Handler, LocalEngine

POLL_SECONDS = 0.02
"""How often each client asks whether its saga ended; latencies are accurate to about this much."""
SCENARIOS = {
    "purchase COMPLETED": simulated_provider.APPROVES,
    "purchase COMPENSATED (declined)": simulated_provider.DECLINES,
}


def _noop_handlers(token: str) -> Callable[[str], Handler]:
    def resolve(handler: str) -> Handler:
        if token == simulated_provider.DECLINES and handler.startswith("functions.process_payment."):

            def decline(event: Any, context: Any) -> Any:
                raise PaymentDeclined("no-op decline")

            return decline
        return lambda event, context: {"saga_id": event.get("saga_id")}

    return resolve


def _ours(engine: LocalEngine, token: str) -> float:
    request = PurchaseRequest(customer_id="tp", sku="SKU-BENCH", quantity=1, payment_token=token)
    started = time.perf_counter()
    saga = sagas.start_saga(request, step_functions.start_execution)
    engine.wait(str(saga.execution_arn), timeout_seconds=300, poll_seconds=POLL_SECONDS)
    return time.perf_counter() - started


def _floor(engine: LocalEngine, token: str) -> float:
    saga_id = uuid.uuid4().hex
    started = time.perf_counter()
    arn = step_functions.start_execution("purchase", saga_id, {"saga_id": saga_id, "correlation_id": saga_id})
    engine.wait(arn, timeout_seconds=300, poll_seconds=POLL_SECONDS)
    return time.perf_counter() - started


def _load(run_one: Callable[[], float], sagas_count: int, concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(lambda _: run_one(), range(sagas_count)))
    elapsed = time.perf_counter() - started
    return {"sagas_per_second": sagas_count / elapsed, **summary_ms(latencies)}


def run(sagas_count: int, concurrencies: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """Per scenario and concurrency: ours and the floor, sagas/s and p50/p99, and our share of the time."""
    results: dict[str, Any] = {}
    for scenario, token in SCENARIOS.items():
        for concurrency in concurrencies:
            with LocalEngine() as engine:
                ours = _load(functools.partial(_ours, engine, token), sagas_count, concurrency)
            with LocalEngine(handler_for=_noop_handlers(token)) as engine:
                floor = _load(functools.partial(_floor, engine, token), sagas_count, concurrency)
            results[f"{scenario}, concurrency {concurrency}"] = {
                "ours": ours,
                "engine_floor": floor,
                "our_share_of_p50": 1 - floor["p50_ms"] / ours["p50_ms"],
            }
    with LocalEngine(handler_for=_noop_handlers(simulated_provider.APPROVES), reuse_lambda_client=False) as engine:
        unreused = _load(lambda: _floor(engine, simulated_provider.APPROVES), sagas_count, 1)
    results["engine floor without Lambda client reuse, concurrency 1"] = {"engine_floor": unreused}
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


if __name__ == "__main__":
    print(json.dumps(run(10), indent=1))
