"""Cold start: a fresh interpreter imports a handler, builds what it builds, and serves one event.

Measured from outside (the whole process, interpreter start-up included) for every step handler and, in the same
run, against:
- two references: a hello-world handler and an eager one (bench/reference/eager.py);
- each step's import floor: a fresh interpreter importing just the libraries that step uses (STEP_LIBRARIES);
- the SnapStart path: a process initialised as Lambda initialises a SnapStart version (the handler imported, the
  before-snapshot hooks run), then, timed, the after-restore hooks and the first event.
"""

from __future__ import annotations

import json
import os
import re
import statistics

# subprocess runs only this interpreter, on this repository's modules.
import subprocess  # nosec B404
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.step_overhead import PURCHASE_CHAIN, RETURN_CHAIN, floor, seed_bench_product
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest
from chalicelib.settings import get_settings
from payment_provider import tokens

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES: tuple[str, ...] = ("sqlalchemy.orm", "pydantic", "pydantic_settings", "redis")
LIBRARIES += ("aws_lambda_powertools.logging", "aws_lambda_powertools.metrics")
"""What every step uses: the ORM, models and settings, the cache and idempotency store, Powertools' logs and EMF
metrics. Powertools' idempotency modules are left out, so their own cost counts against the step."""
CALLS_THE_PROVIDER = frozenset({"process_payment", "refund_payment", "issue_refund", "cancel_refund"})
DRIVERS = {
    "mysql": ("sqlalchemy.dialects.mysql.pymysql", "pymysql"),
    "postgresql": ("sqlalchemy.dialects.postgresql.pg8000", "pg8000"),
    "sqlite": ("sqlalchemy.dialects.sqlite.pysqlite", "sqlite3"),
}
"""SQLAlchemy's dialect for the database's URL, and its driver."""
SNAPSTART_RESTORE = (
    "import sys, json, time\n"
    "from types import SimpleNamespace\n"
    "import snapshot_restore_py as hooks\n"
    "module = __import__(sys.argv[1], fromlist=['lambda_handler'])\n"
    "for func, args, kwargs in reversed(hooks.get_before_snapshot()):\n"
    "    func(*args, **kwargs)\n"
    "print('snapshot', flush=True)\n"
    "saga_id = sys.stdin.readline().strip()\n"
    "started = time.perf_counter()\n"
    "for func, args, kwargs in hooks.get_after_restore():\n"
    "    func(*args, **kwargs)\n"
    "context = SimpleNamespace(get_remaining_time_in_millis=lambda: 30000)\n"
    "json.dumps(module.lambda_handler({'saga_id': saga_id}, context))\n"
    "sys.stderr.write(f'restored {time.perf_counter() - started}\\n')\n"
)
"""The runtime runs before-snapshot hooks in the reverse order of their registration, after-restore hooks in it."""
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


HOLD_BACK_DYNAMODB = (
    "import sys, types\n"
    "held = types.ModuleType('aws_lambda_powertools.utilities.idempotency.persistence.dynamodb')\n"
    "held.DynamoDBPersistenceLayer = None\n"
    "sys.modules[held.__name__] = held\n"
)
OPTIONS = {
    "idempotency: Powertools as shipped (its DynamoDB layer, boto3)": (
        "import aws_lambda_powertools.utilities.idempotency.persistence.cache"
    ),
    "idempotency: Powertools with the DynamoDB layer held back (chosen)": (
        HOLD_BACK_DYNAMODB + "import aws_lambda_powertools.utilities.idempotency.persistence.cache"
    ),
    "idempotency: a layer of our own (redis, jmespath only)": "import redis, jmespath",
    "secrets: Powertools parameters, a boto3 Secrets Manager client": (
        "from aws_lambda_powertools.utilities import parameters\n"
        "import boto3; boto3.client('secretsmanager', region_name='us-east-1')"
    ),
    "secrets: the extension over HTTP, one read (chosen)": (
        "import http.client, json\n"
        "connection = http.client.HTTPConnection('127.0.0.1', 0)\n"
        "connection.request('GET', '/secretsmanager/get?secretId=x', headers={'X-Aws-Parameters-Secrets-Token': 't'})\n"
        "json.loads(connection.getresponse().read())['SecretString']"
    ),
}
"""The options the issue asks to measure before choosing, each alone in a fresh interpreter."""


class _FakeExtension(BaseHTTPRequestHandler):
    """The Parameters and Secrets extension's answer to a read, served from this process."""

    def do_GET(self) -> None:
        body = json.dumps({"SecretString": "secret"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def options(repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Median milliseconds each option's code takes in a fresh interpreter, timed inside it (start-up excluded)."""
    extension = ThreadingHTTPServer(("127.0.0.1", 0), _FakeExtension)
    threading.Thread(target=extension.serve_forever, daemon=True).start()
    measured = {}
    try:
        for name, code in OPTIONS.items():
            code = code.replace("('127.0.0.1', 0)", f"('127.0.0.1', {extension.server_address[1]})")
            timed = (
                "import sys, time\nstarted = time.perf_counter()\n"
                f"{code}\nsys.stderr.write(f'timed {{time.perf_counter() - started}}')"
            )
            measured[name] = 1000 * statistics.median(_timed_inside(timed, env) for _ in range(repeats))
    finally:
        extension.shutdown()
        extension.server_close()
    return measured


def _timed_inside(code: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)  # noqa: S603  # nosec B603
    found = re.search(r"timed ([0-9.e-]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"option failed: {done.stderr[-2000:]}")
    return float(found.group(1))


def step_libraries(step: str, database_url: str) -> tuple[str, ...]:
    """The libraries `step` uses, with SQLAlchemy's dialect and driver of the database at `database_url`."""
    dialect = database_url.split(":", 1)[0].split("+", 1)[0]
    provider = ("http.client",) if step in CALLS_THE_PROVIDER else ()
    return (*LIBRARIES, *DRIVERS[dialect], *provider)


def _import_once(libraries: tuple[str, ...], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603  # nosec B603
        [sys.executable, "-c", f"import {', '.join(libraries)}"], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"importing {libraries} failed: {done.stderr[-2000:]}")
    return elapsed


def _restore_once(module: str, saga_id: str, env: dict[str, str]) -> float:
    """Seconds from the (simulated) restore to the first event's answer: the after-restore hooks and the event."""
    child = subprocess.Popen(  # noqa: S603  # nosec B603
        [sys.executable, "-c", SNAPSTART_RESTORE, module],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if child.stdin is None or child.stdout is None:
        raise RuntimeError("the pipes asked for were not made")
    ready = child.stdout.readline()
    child.stdin.write(saga_id + "\n")
    child.stdin.flush()
    _, errors = child.communicate(timeout=120)
    found = re.search(r"^restored ([0-9.e-]+)$", errors, re.MULTILINE)
    if child.returncode != 0 or ready.strip() != "snapshot" or found is None:
        raise RuntimeError(f"{module} failed on the SnapStart path: {errors[-2000:]}")
    return float(found.group(1))


def _paired(ours: list[float], base: list[float]) -> float:
    """The median of the ratios of runs measured one after the other: a shared machine's load, which drifts over a
    run, moves it less than it moves the ratio of the medians."""
    return statistics.median(mine / theirs for mine, theirs in zip(ours, base, strict=True))


def beyond_floor(module: str, libraries: tuple[str, ...], saga_id: str, env: dict[str, str]) -> list[str]:
    """The top-level packages a cold start of `module` loads that importing `libraries` does not."""
    loaded = "import sys; sys.stderr.write(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    served = subprocess.run(  # noqa: S603  # nosec B603
        [sys.executable, "-c", SERVE_ONE + loaded, module, saga_id], env=env, capture_output=True, text=True
    )
    imported = subprocess.run(  # noqa: S603  # nosec B603
        [sys.executable, "-c", f"import {', '.join(libraries)}; {loaded}"], env=env, capture_output=True, text=True
    )
    if served.returncode or imported.returncode:
        raise RuntimeError(f"could not list the modules of {module}: {served.stderr[-1000:]}{imported.stderr[-1000:]}")
    ours = set(served.stderr.split()) - set(imported.stderr.split())
    return sorted(name for name in ours if not name.startswith("_") and name not in ("chalicelib", "functions"))


STEP_NAMES = tuple(step.__name__ for step in (*PURCHASE_CHAIN, *RETURN_CHAIN))


def _ready_sagas(step_name: str, count: int) -> list[str]:
    """`count` sagas in the state `step_name` expects, made just before it runs: the provider settles refunds after
    REFUND_SETTLE_SECONDS, and cancel_refund needs them pending."""
    for chain, request in ((PURCHASE_CHAIN, _purchase), (RETURN_CHAIN, _return)):
        names = [step.__name__ for step in chain]
        if step_name in names:
            ready = []
            for _ in range(count):
                with database.UnitOfWork() as uow:
                    saga_id = saga_log.create_saga(uow.session, request()).id
                    uow.commit()
                for earlier in chain[: names.index(step_name)]:
                    floor(earlier, saga_id)
                ready.append(saga_id)
            return ready
    raise ValueError(f"no saga chain has the step {step_name}")


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
    return ReturnRequest(customer_id="cold", order_id=order_id, quantity=1, reason="cold start")


def run(repeats: int) -> dict[str, Any]:
    """Median cold start per handler module and per reference, each step's ratio to both references and to its
    import floor, and the SnapStart path against the full cold path (those two ratios paired, see `_paired`)."""
    env = _environment()
    seed_bench_product()
    measured: dict[str, float] = {}
    for reference in ("hello", "eager"):
        measured[reference] = statistics.median(
            _serve_once(f"bench.reference.{reference}", "0" * 32, env) for _ in range(repeats)
        )
    steps: dict[str, dict[str, Any]] = {}
    for step in STEP_NAMES:
        sagas = _ready_sagas(step, 2 * repeats)
        module, libraries = f"functions.{step}", step_libraries(step, env["DATABASE_URL"])
        cold, floor_, restored = [], [], []
        for cold_saga, restored_saga in zip(sagas[:repeats], sagas[repeats:], strict=True):
            # Interleaved, so that the load of the moment weighs on the three alike.
            cold.append(_serve_once(module, cold_saga, env))
            floor_.append(_import_once(libraries, env))
            restored.append(_restore_once(module, restored_saga, env))
        seconds, floor_s, restored_s = (statistics.median(found) for found in (cold, floor_, restored))
        steps[step] = {
            "ms": 1000 * seconds,
            "ratio_to_eager": seconds / measured["eager"],
            "ratio_to_hello": seconds / measured["hello"],
            "import_floor_ms": 1000 * floor_s,
            "import_floor_libraries": list(libraries),
            "ratio_to_import_floor": _paired(cold, floor_),
            "snapstart": {
                "restored_first_invocation_ms": 1000 * restored_s,
                "full_cold_path_ms": 1000 * seconds,
                "ratio_to_full_cold_path": _paired(restored, cold),
            },
        }
    first = STEP_NAMES[0]
    return {
        "hello_world_ms": 1000 * measured["hello"],
        "eager_reference_ms": 1000 * measured["eager"],
        "steps": steps,
        "top_imports": top_imports("functions.reserve_stock", env),
        "options_ms": options(repeats, env),
        "beyond_import_floor": {
            "step": first,
            "packages": beyond_floor(
                f"functions.{first}", step_libraries(first, env["DATABASE_URL"]), _ready_sagas(first, 1)[0], env
            ),
        },
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
