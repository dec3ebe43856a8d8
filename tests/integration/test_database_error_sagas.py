"""A saga whose step meets a real database error that a retry fixes still completes: the error is told by its
code, the state machine retries it, the failed attempt is audited, and the invariants hold.

Each test provokes the error on the step's own session while the saga runs: a row lock held past the account's
lock timeout (PostgreSQL's `lock_timeout`, MariaDB's per-account `MAX_STATEMENT_TIME`), the step's session killed
while it waits (`pg_terminate_backend`, `KILL CONNECTION`: what a failover does), and a session left on a server
that turned read-only (the account's transactions read-only when the step connected, writable again for new
sessions: a failover's old primary and its new one). And a request the database cannot serve now is a 503.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from chalice.test import Client
from sqlalchemy import create_engine, text

from app import app
from chalicelib.adapters import database, step_functions
from chalicelib.service import sagas
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.database_faults import (
    account,
    admin_connection,
    kill_session,
    row_locked,
    sessions_waiting_on_a_lock,
    set_role,
    wait_for,
)
from tests.helpers import (
    SagaRun,
    assert_consistent,
    assert_every_attempt_audited,
    audit_rows,
    finish,
    purchase,
    task_errors,
)

COMPLETED_PATH = ["ReserveStock", "ProcessPayment", "ConfirmSale", "Completed"]
SKU = "SKU-MOUSE"
TIMEOUTS = ("States.Timeout", "Sandbox.Timedout")


@pytest.fixture
def steps_as(engine: LocalEngine) -> Iterator[LocalEngine]:
    """The step functions run as another account (a configuration update: the workers are replaced)."""
    yield engine
    engine.extra_environment = {}


def _start() -> str:
    return sagas.start_saga(purchase(sku=SKU), step_functions.start_execution).id


def _failed_with(saga_id: str, error: str) -> bool:
    """Whether an attempt of ReserveStock is audited as failed with `error`."""
    return ("FAILED", error) in {(status, kind) for _, status, kind in audit_rows(saga_id, "reserve_stock")}


def _assert_retried_and_completed(run: SagaRun, error: str) -> None:
    """ReserveStock failed with `error`, was retried, and the saga went on to complete. On a loaded machine the
    attempt that met the error may answer after its Task's timeout, which Step Functions then sees instead (and
    retries too); the audit log holds what the step met, and every attempt."""
    assert (run.status, run.states) == ("COMPLETED", COMPLETED_PATH)
    attempts = dict(run.path)["ReserveStock"]
    assert attempts >= 2
    assert set(task_errors(run.saga_id, "ReserveStock")) <= {error, *TIMEOUTS}
    assert _failed_with(run.saga_id, error)
    assert audit_rows(run.saga_id, "reserve_stock")[-1] == (attempts, "SUCCEEDED", None)
    assert_every_attempt_audited(run)
    assert_consistent()


@pytest.mark.parametrize(
    ("backend_name", "timeout", "error"),
    [
        ("postgres", "lock_timeout = '2s'", "ConcurrentUpdate"),
        ("mysql", "MAX_STATEMENT_TIME 2", "DatabaseUnavailable"),
    ],
    indirect=["backend_name"],
    ids=["postgres-lock-timeout", "mysql-statement-time"],
)
def test_a_step_that_waits_past_its_lock_timeout_is_retried_and_the_saga_completes(
    backend: Backend, steps_as: LocalEngine, timeout: str, error: str
) -> None:
    with account(backend.database_url, timeout) as url:
        steps_as.extra_environment = {"DATABASE_URL": url}
        with row_locked(backend.database_url, "products", f"sku = '{SKU}'"):
            saga_id = _start()
            wait_for(lambda: _failed_with(saga_id, error), "an attempt of ReserveStock failed on the lock")
        run = finish(steps_as, saga_id)
    _assert_retried_and_completed(run, error)


@pytest.mark.parametrize("backend_name", ["postgres"], indirect=True)
def test_a_step_whose_session_the_server_kills_is_retried_and_the_saga_completes(
    backend: Backend, engine: LocalEngine
) -> None:
    """On PostgreSQL only for now: on MariaDB this saga test stopped finding the waiting step's session at the end
    of the session that wrote it (its own branch's code too), so it is left for the next one. MariaDB's KILL
    CONNECTION is provoked and classified in test_database_errors.py."""
    url = backend.database_url
    with admin_connection(url) as admin, row_locked(url, "products", f"sku = '{SKU}'"):
        saga_id = _start()

        def kill_the_waiting_step() -> bool:
            # An attempt that timed out may leave its session waiting: each waiter is killed until one answers.
            for session in sessions_waiting_on_a_lock(admin, url):
                kill_session(admin, url, session)
            return _failed_with(saga_id, "DatabaseUnavailable")

        wait_for(kill_the_waiting_step, "ReserveStock's killed attempt is audited")
    _assert_retried_and_completed(finish(engine, saga_id), "DatabaseUnavailable")


@pytest.mark.parametrize("backend_name", ["postgres"], indirect=True)
def test_a_step_left_on_a_read_only_server_reconnects_and_the_saga_completes(
    backend: Backend, steps_as: LocalEngine
) -> None:
    """The step connects while its account's transactions are read-only (25006), as to a primary just demoted.
    Once it waits, new sessions are writable again, as the new primary's are: the error must drop the stale
    connection, or every retry would reuse it and the saga would be compensated."""
    url = backend.database_url
    with account(url) as role_url:
        steps_as.extra_environment = {"DATABASE_URL": role_url}
        holder = create_engine(url)
        try:
            with holder.connect() as lock, admin_connection(url) as admin:
                lock.execute(text("LOCK TABLE reservations IN ACCESS EXCLUSIVE MODE"))
                set_role(url, role_url, "SET default_transaction_read_only = on")
                saga_id = _start()
                wait_for(lambda: sessions_waiting_on_a_lock(admin, url), "ReserveStock waits on the table lock")
                set_role(url, role_url, "RESET default_transaction_read_only")
                lock.rollback()
            run = finish(steps_as, saga_id)
        finally:
            holder.dispose()
    _assert_retried_and_completed(run, "DatabaseUnavailable")


@pytest.mark.parametrize("backend_name", ["postgres", "mysql"], indirect=True)
def test_a_request_the_database_cannot_serve_now_is_a_503_and_the_same_key_then_starts_the_saga(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API runs as an account allowed one connection, which another session holds: too many connections
    (53300, 1226) is no fault of the request, so the answer is 503 with Retry-After, never a 500."""
    limit = "MAX_USER_CONNECTIONS 1" if backend.name == "mysql" else "CONNECTION LIMIT 1"
    request = {"customer_id": "c-db", "sku": SKU, "quantity": 1, "payment_token": "tok_visa"}
    headers = {"Content-Type": "application/json", "Idempotency-Key": "order-db-busy"}
    settings = get_settings()
    # The steps keep the backend's own account whatever the API's is when they start: a step that began on the
    # limited account would lose it when the account is dropped below.
    monkeypatch.setitem(engine.extra_environment, "DATABASE_URL", backend.database_url)
    with account(backend.database_url, limit) as url, Client(app) as client:
        settings.database_url = url  # the backend fixture restores it
        database.reset_engine()
        other = create_engine(url)
        with other.connect() as held:
            held.execute(text("SELECT 1"))
            refused = client.http.post("/purchases", headers=headers, body=json.dumps(request))
        other.dispose()
        accepted = client.http.post("/purchases", headers=headers, body=json.dumps(request))
        saga_id = accepted.json_body["saga_id"]
        settings.database_url = backend.database_url
        database.reset_engine()

    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert refused.json_body["error"] == "ServiceUnavailable"
    assert accepted.status_code == 202
    assert finish(engine, saga_id).status == "COMPLETED"
    assert_consistent()
