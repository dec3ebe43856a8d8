"""The local Lambda runtime's own costs, measured side by side in one run:

- a warm invocation through a worker process against calling the same handler in this process (no-op handler,
  so that only the runtime is measured);
- the first invocation of each step function (a new worker: its init, then the event) against a warm one;
- the peak memory of the worker processes (VmHWM of each, read from /proc before the runtime stops them).
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from bench.noop_handlers import succeed
from bench.stats import summary_ms
from bench.step_overhead import BENCH_SKU, PURCHASE_CHAIN, RETURN_CHAIN
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, state_of_step
from infra.engine.local_engine import ROOT, LocalEngine
from infra.engine.local_functions import LocalFunctions
from local_lambda import FunctionConfig, Invocation, LambdaRuntime
from local_lambda.processes import workers_of
from payment_provider import tokens

NOOP = "bench.noop_handlers.succeed"
EVENT = {"saga_id": "0123456789abcdef0123456789abcdef", "retry_count": 0}


def _discard(function_name: str, text: str) -> None:
    """The runtime's log lines are not part of what is measured."""


def warm_overhead(calls: int) -> dict[str, Any]:
    """p50/p99 of a warm no-op invocation through a worker, and of the same call in this process."""
    payload = json.dumps(EVENT).encode()
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 30_000)
    in_process, through_worker = [], []
    config = FunctionConfig("Noop", NOOP, [str(ROOT)], timeout_seconds=30, memory_mb=512)
    with LambdaRuntime([config], log_sink=_discard) as runtime:
        runtime.invoke("Noop", payload)  # the cold start is not part of a warm call
        for _ in range(calls):
            started = time.perf_counter()
            json.dumps(succeed(json.loads(payload), context))
            in_process.append(time.perf_counter() - started)
            started = time.perf_counter()
            runtime.invoke("Noop", payload)
            through_worker.append(time.perf_counter() - started)
    ours, base = summary_ms(through_worker), summary_ms(in_process)
    return {"worker": ours, "in_process": base, "added_p50_ms": ours["p50_ms"] - base["p50_ms"]}


def first_invocations(engine: LocalEngine) -> dict[str, Any]:
    """Per step function: its first invocation (init + event) against its second, on sagas walked in order."""
    functions = engine.functions
    if functions is None:
        raise RuntimeError("the engine is not started")
    bought, bought_again = (
        _saga(PurchaseRequest(customer_id="rt", sku=BENCH_SKU, quantity=1, payment_token=tokens.APPROVES))
        for _ in range(2)
    )
    results: dict[str, Any] = {}
    for step in PURCHASE_CHAIN[:3]:
        cold = _invoke(functions, step.__name__, bought)
        warm = _invoke(functions, step.__name__, bought_again)
        results[step.__name__] = _compared(cold, warm)
    returned, returned_again = (
        _saga(ReturnRequest(customer_id="rt", order_id=_order_of(saga_id), quantity=1, reason="runtime bench"))
        for saga_id in (bought, bought_again)
    )
    for step in RETURN_CHAIN[:3]:
        cold = _invoke(functions, step.__name__, returned)
        warm = _invoke(functions, step.__name__, returned_again)
        results[step.__name__] = _compared(cold, warm)
    return results


def peak_worker_memory_mb(parent_pid: int) -> float:
    """The sum of the peak resident memory of this process's live worker processes."""
    return sum(worker.peak_rss_kb for worker in workers_of(parent_pid)) / 1024


def _invoke(functions: LocalFunctions, step: str, saga_id: str) -> tuple[float, Invocation]:
    started = time.perf_counter()
    invocation = functions.run(f"{state_of_step(step)}Function", json.dumps({"saga_id": saga_id}).encode())
    elapsed = time.perf_counter() - started
    if invocation.function_error:
        raise RuntimeError(f"{step} failed: {invocation.payload[:500]!r}")
    return elapsed, invocation


def _compared(cold: tuple[float, Invocation], warm: tuple[float, Invocation]) -> dict[str, Any]:
    (cold_s, cold_invocation), (warm_s, _) = cold, warm
    return {
        "first_ms": 1000 * cold_s,
        "init_ms": cold_invocation.init_ms,
        "cold_start": cold_invocation.cold_start,
        "warm_ms": 1000 * warm_s,
        "ratio": cold_s / warm_s,
    }


def _saga(request: PurchaseRequest | ReturnRequest) -> str:
    with database.UnitOfWork() as uow:
        saga_id = saga_log.create_saga(uow.session, request).id
        uow.commit()
    return saga_id


def _order_of(saga_id: str) -> str:
    with database.UnitOfWork() as uow:
        return str(uow.session.get_one(Saga, saga_id).result["order_id"])
