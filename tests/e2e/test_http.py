"""`make run`'s server as a subprocess on a free loopback port, driven over real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.domain import catalogue
from chalicelib.domain.contracts import PurchaseRequest
from infra.tools import samples
from tests.conftest import Backend
from tests.e2e.server import Server, running_server
from tests.helpers import ROOT, assert_consistent, moved_saga

LIMITED_SKU = "SKU-LIMITED"


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    with database.UnitOfWork() as uow:
        uow.session.add_all(catalogue.add_product(LIMITED_SKU, "Limited edition", 9_900, 10))
        uow.commit()
    # The deployed backoff, not the tests' hundredth: a flaky payment's retry must still be waiting when the
    # killed-server test kills the server, so that the kill cuts a saga.
    with running_server(backend, tmp_path / "server.log", LOCAL_TIME_SCALE="1") as running:
        yield running


@pytest.mark.backends("postgres")  # HTTP and process handling; the database decides nothing here
def test_purchase_then_return_over_http(server: Server) -> None:
    api = server.api

    status, accepted = api.call(
        "POST", "/purchases", {"customer_id": "c-e2e", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_flaky"}
    )
    assert status == 202
    bought = api.final(accepted["saga_id"])
    assert bought["status"] == "COMPLETED"
    assert [s["attempts"] for s in bought["steps"]] == [1, 2, 1]

    status, accepted = api.call(
        "POST",
        "/returns",
        {"customer_id": "c-e2e", "order_id": bought["result"]["order_id"], "quantity": 1, "reason": "wrong colour"},
    )
    assert status == 202
    returned = api.final(accepted["saga_id"])
    assert returned["status"] == "COMPLETED"
    assert returned["result"]["refund_cents"] == 2_500
    assert api.call("GET", "/products/SKU-MOUSE")[1]["on_hand"] == 999


@pytest.mark.backends("embedded")  # what a newcomer's `make run` serves; the database decides nothing it prints
def test_the_readme_session_prints_what_the_readme_shows(server: Server) -> None:
    printed = samples.run_session(samples.README_SESSION, server.port, server.env)

    recorded = samples.read("readme_session").output
    assert samples.normalised("readme_session", printed) == samples.normalised("readme_session", recorded), (
        "docs/samples/readme_session.txt is stale: run `make docs`"
    )


@pytest.mark.alone  # thirty sagas' functions at once, each holding a database connection
def test_thirty_concurrent_purchases_of_ten_units_sell_exactly_ten(
    server: Server,
) -> None:
    api = server.api
    body = {"customer_id": "c-rush", "sku": LIMITED_SKU, "quantity": 1, "payment_token": "tok_visa"}

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda _: api.call("POST", "/purchases", body), range(30)))

    assert [status for status, _ in answers] == [202] * 30
    outcomes = Counter(api.final(accepted["saga_id"])["status"] for _, accepted in answers)
    assert outcomes == {"COMPLETED": 10, "REJECTED": 20}
    product = api.call("GET", f"/products/{LIMITED_SKU}")[1]
    assert (product["available"], product["on_hand"], product["reserved"]) == (0, 0, 0)


@pytest.mark.backends("postgres")  # HTTP and process handling; the database decides nothing here
def test_server_binds_loopback_only_and_stops_cleanly_on_ctrl_c(server: Server) -> None:
    process, port = server.process, server.port
    assert process is not None
    listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
    assert f"127.0.0.1:{port}" in listening

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=20) == 0


def test_sagas_cut_by_a_killed_server_are_finished_when_it_restarts(server: Server) -> None:
    body = {"customer_id": "c-crash", "sku": LIMITED_SKU, "quantity": 1, "payment_token": "tok_flaky"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: server.api.call("POST", "/purchases", body), range(8)))
    server.kill()  # SIGKILL: no clean-up, executions die mid-run

    with database.UnitOfWork() as uow:
        statuses = [uow.session.get_one(Saga, accepted["saga_id"]).status for _, accepted in answers]
    server.start()
    final = [server.api.final(accepted["saga_id"])["status"] for _, accepted in answers]

    assert [status for status, _ in answers] == [202] * 8
    assert "RUNNING" in statuses, "the kill should have cut at least one saga"
    assert final == ["COMPLETED"] * 8
    assert "resumed" in server.log.read_text()
    product = server.api.call("GET", f"/products/{LIMITED_SKU}")[1]
    assert (product["on_hand"], product["reserved"]) == (2, 0)
    assert_consistent(server.provider())


@pytest.mark.backends("postgres")  # the worker's thread in make run; the bulk retry's data has tests of its own
def test_make_run_works_a_bulk_retry_through_in_the_background(server: Server) -> None:
    request = PurchaseRequest(customer_id="c-bulk", sku=LIMITED_SKU, quantity=1, payment_token="tok_visa")
    failed = {moved_saga(request, "COMPENSATING", "FAILED") for _ in range(3)}
    body = {"filter": {"customer_id": "c-bulk", "status": "FAILED"}}

    dry = server.api.call("POST", "/sagas/retry", {**body, "dry_run": True})
    status, accepted = server.api.call("POST", "/sagas/retry", body)
    operation = _operation_done(server, accepted["operation_id"])

    assert (dry[0], dry[1]["matched"], set(dry[1]["saga_ids"])) == (200, 3, failed)
    assert (status, accepted["matched"]) == (202, 3)
    assert {key: operation[key] for key in ("matched", "started", "done", "failed")} == {
        "matched": 3,
        "started": 3,
        "done": 3,
        "failed": 0,
    }
    assert {server.api.final(saga_id)["status"] for saga_id in failed} == {"COMPENSATED"}
    assert "bulk retry: took up" in server.log.read_text()
    assert_consistent(server.provider())


def _operation_done(server: Server, operation_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, operation = server.api.call("GET", f"/operations/{operation_id}")
        assert status == 200, operation
        if operation["status"] == "DONE":
            return operation
        time.sleep(0.1)
    raise AssertionError(f"operation {operation_id} not done in {timeout} s")


@pytest.mark.backends("postgres")  # HTTP and process handling; the database decides nothing here
def test_the_localstack_smoke_script_runs_a_purchase_and_a_return_through_an_api(
    server: Server, tmp_path: Path
) -> None:
    # The same script `make localstack-smoke` runs against the API deployed to LocalStack, here against `make run`'s.
    stack_file = tmp_path / "localstack-stack.json"
    stack_file.write_text(json.dumps({"api_url": f"http://127.0.0.1:{server.port}"}))
    done = subprocess.run(
        [sys.executable, "-m", "infra.deploy.localstack.smoke", "--stack-file", str(stack_file)],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["purchase", "return"]
    assert all(line.endswith(": COMPLETED") for line in lines)
