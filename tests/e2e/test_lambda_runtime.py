"""`make run` runs every step in worker processes that behave as Lambda's execution environments: with
LOCAL_LAMBDA_TIMEOUT=2, a timed-out attempt is killed and retried, a crashed one is retried without doing its
work twice; and when the server is SIGKILLed, no worker outlives it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_lambda.processes import workers_of
from tests.conftest import Backend
from tests.e2e.server import Server, running_server

pytestmark = pytest.mark.backends("postgres")
"""The worker runtime's kills and restarts are decided by the runtime, not the data layer (test_idempotency.py
covers a redelivered step on every backend). So one backend: PostgreSQL, the deployed default."""


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    with running_server(backend, tmp_path / "server.log", LOCAL_LAMBDA_TIMEOUT="2") as running:
        yield running


def _purchase(server: Server, **faults: str) -> dict[str, object]:
    body = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa", "faults": faults}
    status, accepted = server.api.call("POST", "/purchases", body)
    assert status == 202, accepted
    return server.api.final(str(accepted["saga_id"]))


def _attempts(view: dict[str, object], step: str) -> int:
    return next(int(s["attempts"]) for s in view["steps"] if s["name"] == step)  # type: ignore[attr-defined,index]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in (Path(f"/proc/{pid}/stat").read_text().split()[2])


def test_a_step_killed_at_its_timeout_is_retried_and_the_purchase_completes(server: Server) -> None:
    view = _purchase(server, process_payment="timeout:1")

    assert view["status"] == "COMPLETED"
    assert _attempts(view, "process_payment") >= 2


def test_a_step_that_crashes_after_committing_changes_nothing_twice(server: Server) -> None:
    _, before = server.api.call("GET", "/products/SKU-MOUSE")

    view = _purchase(server, confirm_sale="crash:1")
    # The crashed attempt committed the sale, and with it COMPLETED; the retry that finds it is recorded after.
    deadline = time.monotonic() + 60
    while _attempts(view, "confirm_sale") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        view = server.api.call("GET", f"/sagas/{view['saga_id']}")[1]

    _, after = server.api.call("GET", "/products/SKU-MOUSE")
    assert view["status"] == "COMPLETED"
    assert _attempts(view, "confirm_sale") == 2
    assert (after["on_hand"], after["reserved"]) == (before["on_hand"] - 2, before["reserved"])


def test_no_worker_outlives_a_sigkilled_server(server: Server) -> None:
    assert _purchase(server)["status"] == "COMPLETED"
    assert server.process is not None
    workers = {worker.pid for worker in workers_of(server.process.pid)}
    assert len(workers) >= 3, "each step of the purchase ran in a worker of the server"

    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)

    assert [pid for pid in workers if _alive(pid)] == []
