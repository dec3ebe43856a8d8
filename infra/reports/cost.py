"""`make cost`: state transitions, Lambda invocations and task time per saga path, counted from execution
histories on the local engine, priced per 1,000 sagas for Standard and Express workflows.

Task time is taken from each Task's TaskStarted to TaskSucceeded/TaskFailed in the history: it includes the
interpreter's own Lambda call, so it is an upper bound of the billed Lambda duration.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest
from chalicelib.observability import telemetry
from chalicelib.service import products, sagas
from chalicelib.settings import database_engine, get_settings
from infra.engine import preflight
from infra.engine.local_engine import LocalEngine
from payment_provider import tokens

PRICES_READ_ON = "2026-11-25"
"""AWS list prices, us-east-1, as published on the AWS pricing pages for Step Functions, Lambda, API Gateway."""
STANDARD_PER_TRANSITION = 0.025 / 1_000
EXPRESS_PER_REQUEST = 1.00 / 1_000_000
EXPRESS_PER_GB_SECOND = 0.00001667
EXPRESS_MEMORY_GB = 64 / 1024  # billed in 64 MB chunks; these small definitions and payloads fit in one
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_SECOND = 0.0000166667
LAMBDA_MEMORY_GB = 512 / 1024  # MemorySize in template.yaml
API_PER_REQUEST = 3.50 / 1_000_000  # REST API, first 333 million requests a month


@dataclass(frozen=True)
class PathCost:
    path: str
    transitions: float
    invocations: float
    task_ms: float
    execution_ms: float

    def per_thousand(self, express: bool) -> float:
        lambda_cost = self.invocations * LAMBDA_PER_REQUEST + self.invocations * (
            self.task_ms / 1000 * LAMBDA_MEMORY_GB * LAMBDA_PER_GB_SECOND
        )
        if express:
            billed_seconds = math.ceil(self.execution_ms / 100) / 10
            workflow = EXPRESS_PER_REQUEST + billed_seconds * EXPRESS_MEMORY_GB * EXPRESS_PER_GB_SECOND
        else:
            workflow = self.transitions * STANDARD_PER_TRANSITION
        return 1_000 * (workflow + lambda_cost + API_PER_REQUEST)


def measure(engine: LocalEngine, name: str, make: Callable[[], SagaRequest], count: int) -> PathCost:
    samples = [_counts(engine, make()) for _ in range(count)]
    return PathCost(
        name,
        statistics.mean(s[0] for s in samples),
        statistics.mean(s[1] for s in samples),
        statistics.mean(s[2] for s in samples),
        statistics.mean(s[3] for s in samples),
    )


def _counts(engine: LocalEngine, request: SagaRequest) -> tuple[int, int, float, float]:
    saga = sagas.start_saga(request, step_functions.start_execution)
    engine.wait(str(saga.execution_arn))
    history = step_functions.execution_history(str(saga.execution_arn))
    entered = sum(1 for event in history if event["type"].endswith("StateEntered"))
    invocations = sum(1 for event in history if event["type"] == "TaskScheduled")
    retries = invocations - sum(1 for event in history if event["type"] == "TaskStateEntered")
    task_ms = sum(_task_times(history))
    execution_ms = (history[-1]["timestamp"] - history[0]["timestamp"]).total_seconds() * 1000
    return entered + retries, invocations, task_ms / max(invocations, 1), execution_ms


def _task_times(history: list[dict[str, Any]]) -> list[float]:
    times, started = [], None
    for event in history:
        if event["type"] == "TaskStarted":
            started = event["timestamp"]
        elif event["type"] in ("TaskSucceeded", "TaskFailed") and started is not None:
            times.append((event["timestamp"] - started).total_seconds() * 1000)
            started = None
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20, help="sagas per path (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    telemetry.quiet()
    settings = get_settings()
    settings.allow_faults = True
    database.migrate()
    products.seed_catalogue()
    store = preflight.ENGINE_NAMES[database_engine(settings.effective_database_url)]
    backend = f"{store} + {'Redis' if settings.effective_redis_url else 'embedded Redis (fakeredis on loopback)'}"
    print(f"{args.count} sagas per path on the local engine ({backend}); prices as published {PRICES_READ_ON}.")

    paths = measure_all(args.count)
    print(
        f"{'path':<40} {'transitions':>11} {'invocations':>11} {'task ms':>8} {'$/1k Standard':>14} "
        f"{'$/1k Express':>13}"
    )
    for cost in paths:
        print(
            f"{cost.path:<40} {cost.transitions:>11.1f} {cost.invocations:>11.1f} {cost.task_ms:>8.1f} "
            f"{cost.per_thousand(express=False):>14.4f} {cost.per_thousand(express=True):>13.4f}"
        )
    print(
        "Includes Step Functions, Lambda (512 MB, task time as billed duration) and one API Gateway request per "
        "saga; not RDS, RDS Proxy, ElastiCache, NAT or logs, which cost by the hour or by volume."
    )
    return 0


def measure_all(count: int) -> list[PathCost]:
    """Every saga path, `count` sagas each, on a fresh local engine."""

    def bought() -> str:
        saga = sagas.start_saga(_purchase(), step_functions.start_execution)
        engine.wait(str(saga.execution_arn))
        with database.UnitOfWork() as uow:
            return str(uow.session.get_one(Saga, saga.id).result["order_id"])

    paths: list[tuple[str, Callable[[], SagaRequest]]] = [
        ("purchase COMPLETED", _purchase),
        ("purchase REJECTED (out of stock)", lambda: _purchase(quantity=1000, sku="SKU-MONITOR")),
        ("purchase COMPENSATED (declined)", lambda: _purchase(token=tokens.DECLINES)),
        ("purchase COMPENSATED (confirm fails)", lambda: _purchase(faults={"confirm_sale": "fail"})),
        ("purchase COMPLETED (provider retried)", lambda: _purchase(token=tokens.FLAKY)),
        ("return COMPLETED", lambda: ReturnRequest(customer_id="cost", order_id=bought(), quantity=1, reason="cost")),
    ]
    with LocalEngine(retry_wait_scale=0.01) as engine:
        return [measure(engine, name, make, count) for name, make in paths]


def as_dict(cost: PathCost) -> dict[str, Any]:
    return {
        "path": cost.path,
        "transitions": cost.transitions,
        "invocations": cost.invocations,
        "task_ms": cost.task_ms,
        "standard_per_1000": cost.per_thousand(express=False),
        "express_per_1000": cost.per_thousand(express=True),
    }


def _purchase(
    token: str = tokens.APPROVES,
    quantity: int = 1,
    sku: str = "SKU-KEYBOARD",
    faults: dict[str, str] | None = None,
) -> PurchaseRequest:
    return PurchaseRequest(customer_id="cost", sku=sku, quantity=quantity, payment_token=token, faults=faults or {})


if __name__ == "__main__":
    sys.exit(main())
