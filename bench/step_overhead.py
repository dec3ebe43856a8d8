"""Warm step latency through the Lambda handler against its floor: the same transaction and Redis write, direct.

Each call needs a saga in the state the step expects, so sagas are walked through the purchase chain
(reserve, pay, confirm, then refund and release, which cancels the sale) and the return chain (validate,
refund, restock, cancel), every step timed; handler and floor take turns on their own sagas.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from bench.stats import summary_ms
from chalicelib.adapters import database, saga_cache
from chalicelib.adapters.tables import Product, Saga
from chalicelib.domain import purchase, returns, saga_log
from chalicelib.domain.catalogue import add_product
from chalicelib.domain.contracts import COMPENSATIONS, PurchaseRequest, ReturnRequest, SagaStatus
from chalicelib.service.step_runner import ENDS_SAGA_ON_SUCCESS, StepFunction
from payment_provider import tokens

BENCH_SKU = "SKU-BENCH"
PURCHASE_CHAIN: tuple[StepFunction, ...] = (
    purchase.reserve_stock,
    purchase.process_payment,
    purchase.confirm_sale,
    purchase.refund_payment,
    purchase.release_stock,
)
RETURN_CHAIN: tuple[StepFunction, ...] = (
    returns.validate_return,
    returns.issue_refund,
    returns.update_stock,
    returns.cancel_refund,
)
CONTEXT = SimpleNamespace(get_remaining_time_in_millis=lambda: 30_000)


def floor(step: StepFunction, saga_id: str) -> None:
    """The step's own transaction (effect, audit row, status) and the Redis status write; nothing else."""
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        if step.__name__ in COMPENSATIONS:
            saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING)
        result = step(uow.session, saga, 1)
        saga_log.record_attempt(uow.session, saga, step.__name__, 1, payload=result)
        if step.__name__ in ENDS_SAGA_ON_SUCCESS:
            saga_log.set_status(uow.session, saga, ENDS_SAGA_ON_SUCCESS[step.__name__])
        uow.commit()
    status = json.dumps({"status": saga.status, "version": saga.version})
    client = saga_cache.get_redis()
    if client is None:
        raise RuntimeError("the bench runs with a Redis (its own embedded one when none is set)")
    client.set(saga_cache.STATUS_KEY.format(saga_id=saga.id), status, ex=3600)


def through_handler(step: StepFunction) -> Callable[[str], Any]:
    handler = importlib.import_module(f"functions.{step.__name__}").lambda_handler
    return lambda saga_id: handler({"saga_id": saga_id, "retry_count": 0}, CONTEXT)


def _new_sagas(count: int, make: Callable[[int], Any]) -> list[str]:
    with database.UnitOfWork() as uow:
        ids = [saga_log.create_saga(uow.session, make(i)).id for i in range(count)]
        uow.commit()
    return ids


def _run_chain(chain: tuple[StepFunction, ...], handler_sagas: list[str], floor_sagas: list[str]) -> dict[str, Any]:
    results = {}
    for step in chain:
        handler = through_handler(step)
        handler_times, floor_times = [], []
        for handler_saga, floor_saga in zip(handler_sagas, floor_sagas, strict=True):
            started = time.perf_counter()
            handler(handler_saga)
            handler_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            floor(step, floor_saga)
            floor_times.append(time.perf_counter() - started)
        ours, base = summary_ms(handler_times), summary_ms(floor_times)
        results[step.__name__] = {
            "handler": ours,
            "floor": base,
            "ratio_p50": ours["p50_ms"] / base["p50_ms"],
            "ratio_p99": ours["p99_ms"] / base["p99_ms"],
        }
    return results


def seed_bench_product() -> None:
    """The product every benchmark buys, with stock for any number of runs."""
    with database.UnitOfWork() as uow:
        if uow.session.get(Product, BENCH_SKU) is None:
            uow.session.add_all(add_product(BENCH_SKU, "Benchmark widget", 1_000, 10_000_000))
            uow.commit()


def run(calls: int) -> dict[str, Any]:
    """Per step: handler and floor p50/p99 over `calls` calls each, and their ratio."""
    seed_bench_product()

    def buy(i: int) -> PurchaseRequest:
        return PurchaseRequest(customer_id=f"bench-{i}", sku=BENCH_SKU, quantity=1, payment_token=tokens.APPROVES)

    warm_up = 5  # first calls pay imports and connection set-up; the target is the warm latency
    _run_chain(PURCHASE_CHAIN, _new_sagas(warm_up, buy), _new_sagas(warm_up, buy))
    results = _run_chain(PURCHASE_CHAIN, _new_sagas(calls, buy), _new_sagas(calls, buy))
    orders = []
    for saga_id in _new_sagas(2 * calls, buy):
        for step in PURCHASE_CHAIN[:3]:
            floor(step, saga_id)
        with database.UnitOfWork() as uow:
            orders.append(uow.session.get_one(Saga, saga_id).result["order_id"])

    def give_back(i: int) -> ReturnRequest:
        return ReturnRequest(customer_id=f"bench-{i}", order_id=orders[i], quantity=1, reason="bench")

    handler_sagas = _new_sagas(calls, give_back)
    floor_sagas = _new_sagas(calls, lambda i: give_back(calls + i))
    results |= _run_chain(RETURN_CHAIN, handler_sagas, floor_sagas)
    return results
