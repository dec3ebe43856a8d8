"""Cold start: a fresh interpreter imports a handler, builds what it builds, and serves one event.

Measured from outside (the whole process, interpreter start-up included) for every step handler and for two
references in the same run: a hello-world handler and an eager one (bench/reference/eager.py).
"""

from __future__ import annotations

import os
import re
import statistics

# subprocess runs only this interpreter, on this repository's modules.
import subprocess  # nosec B404
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.step_overhead import PURCHASE_CHAIN, RETURN_CHAIN, floor
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest
from chalicelib.settings import get_settings
from payment_provider import tokens

ROOT = Path(__file__).resolve().parent.parent
SERVE_ONE = (
    "import sys, json\n"
    "from types import SimpleNamespace\n"
    "module = __import__(sys.argv[1], fromlist=['lambda_handler'])\n"
    "context = SimpleNamespace(get_remaining_time_in_millis=lambda: 30000)\n"
    "json.dumps(module.lambda_handler({'saga_id': sys.argv[2]}, context))\n"
)


def _environment() -> dict[str, str]:
    settings = get_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DATABASE_URL": settings.effective_database_url,
    }
    if settings.effective_redis_url:
        env["REDIS_URL"] = settings.effective_redis_url
    if settings.payment_provider_url:
        env["PAYMENT_PROVIDER_URL"] = settings.payment_provider_url
    return env


def _serve_once(module: str, saga_id: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603  # nosec B603
        [sys.executable, "-c", SERVE_ONE, module, saga_id], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed to serve one event: {done.stderr[-2000:]}")
    return elapsed


def _ready_sagas(count: int) -> dict[str, list[str]]:
    """Per step, `count` sagas in the state that step expects."""
    ready: dict[str, list[str]] = defaultdict(list)
    for _ in range(count):
        for chain, request in ((PURCHASE_CHAIN, _purchase), (RETURN_CHAIN, _return)):
            for position, step in enumerate(chain):
                with database.UnitOfWork() as uow:
                    saga_id = saga_log.create_saga(uow.session, request()).id
                    uow.commit()
                for earlier in chain[:position]:
                    floor(earlier, saga_id)
                ready[step.__name__].append(saga_id)
    return ready


def _purchase() -> PurchaseRequest:
    return PurchaseRequest(customer_id="cold", sku="SKU-BENCH", quantity=1, payment_token=tokens.APPROVES)


def _return() -> ReturnRequest:
    with database.UnitOfWork() as uow:
        saga_id = saga_log.create_saga(uow.session, _purchase()).id
        uow.commit()
    for step in PURCHASE_CHAIN[:3]:
        floor(step, saga_id)
    with database.UnitOfWork() as uow:
        order_id = uow.session.get_one(Saga, saga_id).result["order_id"]
    return ReturnRequest(order_id=order_id, quantity=1, reason="cold start")


def run(repeats: int) -> dict[str, Any]:
    """Median cold start per handler module and per reference, and each step's ratio to both references."""
    env = _environment()
    ready = _ready_sagas(repeats)
    measured: dict[str, float] = {}
    for reference in ("hello", "eager"):
        measured[reference] = statistics.median(
            _serve_once(f"bench.reference.{reference}", "0" * 32, env) for _ in range(repeats)
        )
    for step, sagas in ready.items():
        measured[step] = statistics.median(_serve_once(f"functions.{step}", saga_id, env) for saga_id in sagas)
    hello, eager = measured.pop("hello"), measured.pop("eager")
    return {
        "hello_world_ms": 1000 * hello,
        "eager_reference_ms": 1000 * eager,
        "steps": {
            step: {"ms": 1000 * seconds, "ratio_to_eager": seconds / eager, "ratio_to_hello": seconds / hello}
            for step, seconds in measured.items()
        },
        "top_imports": top_imports("functions.reserve_stock", env),
    }


def top_imports(module: str, env: dict[str, str], count: int = 10) -> list[dict[str, Any]]:
    """The top-level packages that cost the most to import for `module`: self times of python -X importtime,
    summed per top-level package (self times add up to the whole import without double counting)."""
    done = subprocess.run(  # noqa: S603  # nosec B603
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, capture_output=True, text=True
    )
    costs: dict[str, int] = defaultdict(int)
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
        if match:
            costs[match.group(2).split(".")[0]] += int(match.group(1))
    ranked = sorted(costs.items(), key=lambda item: item[1], reverse=True)[:count]
    return [{"package": name, "ms": micros / 1000} for name, micros in ranked]
