"""`make reconcile` after a SIGKILLed `make run`: the sagas the server left RUNNING and COMPENSATING, their
executions gone with it, are run to their final status, each step taking effect once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib.adapters.payment_provider import PaymentProviderClient
from payment_provider.launcher import start_provider
from tests.conftest import Backend
from tests.e2e.server import Server, running_server
from tests.helpers import ROOT, assert_consistent, child_env, product, status_history


def _purchase(server: Server, **faults: str) -> str:
    body = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": "tok_visa", "faults": faults}
    status, accepted = server.api.call("POST", "/purchases", body)
    assert status == 202, accepted
    return str(accepted["saga_id"])


def _status(server: Server, saga_id: str) -> str:
    return str(server.api.call("GET", f"/sagas/{saga_id}")[1]["status"])


def _succeeded(server: Server, saga_id: str, step: str) -> bool:
    steps = server.api.call("GET", f"/sagas/{saga_id}")[1]["steps"]
    return any(s["name"] == step and s["status"] == "SUCCEEDED" for s in steps)


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 90
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


# `make run`'s default data, the embedded one: the engine's PostgreSQL paths are the integration tests' business.
@pytest.mark.parametrize("backend_name", ["embedded"])
def test_make_reconcile_finishes_what_a_sigkilled_make_run_left_running_and_compensating(
    backend: Backend, tmp_path: Path
) -> None:
    on_hand = product("SKU-MOUSE").on_hand
    # The server keeps the deployed backoff: the compensation must still be under way when it dies.
    with running_server(backend, tmp_path / "server.log", LOCAL_LAMBDA_TIMEOUT="1", LOCAL_TIME_SCALE="1") as server:
        # Each hangs in a step when the server dies: every attempt that a `timeout` fault hits waits for the
        # function's timeout, and the first ones of each run do. The compensation hangs for five attempts and
        # the waits between them (about a minute), so that it is still under way however slowly the second
        # saga gets to its payment on a loaded machine.
        compensating = _purchase(server, confirm_sale="fail", refund_payment="timeout:5")
        _wait(lambda: _status(server, compensating) == "COMPENSATING")
        running = _purchase(server, process_payment="timeout:3")
        _wait(lambda: _succeeded(server, running, "reserve_stock"))
        assert (_status(server, running), _status(server, compensating)) == ("RUNNING", "COMPENSATING")
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)

    # The same payment provider ledger as the killed server's: `make reconcile` starts the provider on it.
    ledger = server.env["PROVIDER_DATABASE_URL"]
    # What is resumed needs no real backoff: its retries wait a hundredth as long.
    env = child_env(
        backend.database_url,
        backend.tool_redis_url,
        LOCAL_LAMBDA_TIMEOUT="1",
        PROVIDER_DATABASE_URL=ledger,
        LOCAL_TIME_SCALE="0.01",
    )
    done = subprocess.run(
        ["make", "--no-print-directory", "reconcile", "GRACE=0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "found 2 stuck saga(s), resumed 2" in done.stdout
    assert f"{running} COMPLETED" in done.stdout
    assert f"{compensating} COMPENSATED" in done.stdout
    assert status_history(compensating) == ["RUNNING", "COMPENSATING", "COMPENSATED"]
    assert product("SKU-MOUSE").on_hand == on_hand - 1
    with start_provider(0, ledger) as provider:
        assert_consistent(PaymentProviderClient(provider.url, provider.api_key))
