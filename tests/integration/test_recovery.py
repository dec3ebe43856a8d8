"""Retrying a saga (docs/design.md §3.1): a FAILED one once its cause is fixed, or one stuck without a live
execution. Of concurrent retries one is accepted and the others refused; a retry and the reconciler together
start one execution."""

from __future__ import annotations

import subprocess
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymysql
import pytest
from chalice.test import Client
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app import app
from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import AuditEvent, Payment, Reservation, Saga
from chalicelib.domain.errors import SagaNotRunning
from chalicelib.entrypoints import http_api
from chalicelib.service import reconciler, recovery, sagas
from chalicelib.service.executions import StepFunctions, boto3_step_functions
from functions import reserve_stock
from infra.engine.local_engine import LocalEngine
from infra.tools import invariants
from tests.conftest import TEST_RETRY_WAIT_SCALE, Backend
from tests.helpers import (
    assert_consistent,
    child_env,
    end_first_execution,
    final_view,
    finish,
    lambda_context,
    purchase,
    saga_executions,
    set_stock,
    single_retry,
    slow_step_functions,
    status_history,
    step_functions_answering_once_ended,
    stuck_saga,
)

ROOT = Path(__file__).resolve().parents[2]
RACERS = 8


def _fix_the_cause(saga_id: str, **other_faults: str) -> None:
    """The world is mended: the request's injected compensation fault is gone (`other_faults` take its place)."""
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        saga.input = {**saga.input, "faults": {"confirm_sale": "fail", **other_faults}}
        uow.commit()


def _failed_saga(engine: LocalEngine) -> str:
    run = finish(
        engine,
        sagas.start_saga(purchase(confirm_sale="fail", refund_payment="fail"), step_functions.start_execution).id,
    )
    assert run.status == "FAILED"
    return run.saga_id


def test_a_failed_saga_retried_over_the_api_once_its_cause_is_fixed_ends_compensated(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = _failed_saga(engine)
    _fix_the_cause(saga_id)

    with Client(app) as client:
        response = client.http.post(f"/sagas/{saga_id}/retry")
        assert response.status_code == 202
        assert response.json_body["status"] == "COMPENSATING"
        view = final_view(client, saga_id)

    assert view["status"] == "COMPENSATED"
    assert [(s["name"], s["status"]) for s in view["steps"]][-2:] == [
        ("refund_payment", "SUCCEEDED"),
        ("release_stock", "SUCCEEDED"),
    ]
    assert status_history(saga_id) == ["RUNNING", "COMPENSATING", "FAILED", "COMPENSATING", "COMPENSATED"]
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
    with database.UnitOfWork() as uow:
        assert uow.session.scalars(select(Payment.status).where(Payment.saga_id == saga_id)).one() == "REFUNDED"
    assert_consistent()


def test_a_saga_stuck_without_an_execution_is_retried_over_the_api_and_completes(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = stuck_saga(purchase())

    with Client(app) as client:
        response = client.http.post(f"/sagas/{saga_id}/retry")
        assert (response.status_code, response.json_body["status"]) == (202, "RUNNING")
        view = final_view(client, saga_id)

    assert view["status"] == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id]  # its first execution had never started: it is that one
    assert_consistent()


def test_retrying_a_final_saga_is_a_conflict_and_an_unknown_one_is_404(backend: Backend, engine: LocalEngine) -> None:
    done = finish(engine, sagas.start_saga(purchase(), step_functions.start_execution).id)
    with Client(app) as client:
        conflict = client.http.post(f"/sagas/{done.saga_id}/retry")
        unknown = client.http.post(f"/sagas/{'0' * 32}/retry")

    assert (conflict.status_code, conflict.json_body["error"]) == (409, "NotRetryable")
    assert (unknown.status_code, unknown.json_body["error"]) == (404, "NotFound")
    assert status_history(done.saga_id) == ["RUNNING", "COMPLETED"]


def test_retrying_a_saga_whose_execution_runs_is_refused_and_starts_nothing(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = stuck_saga(purchase())
    running = StepFunctions(start=pytest.fail, status=lambda arn: "RUNNING", arn_for=step_functions.execution_arn_for)

    with pytest.raises(recovery.NotRetryable, match="running"):
        recovery.retry(saga_id, running)

    assert recovery.retry(saga_id, boto3_step_functions()) is not None  # the refusal gave the lease back
    assert finish(engine, saga_id).status == "COMPLETED"


def _answer(call: Callable[[], Any]) -> int | str:
    """The HTTP status the API gives for `call` (an entry point): its answer, its ApiError, else the error that
    would have been a 500 (named, so that a failing test says what it was)."""
    try:
        return int(call().status_code)
    except http_api.ApiError as error:
        return error.status
    except Exception as error:
        return f"500 {''.join(traceback.format_exception(error))}"


def test_concurrent_retries_give_one_202_and_409_for_the_rest(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _failed_saga(engine)
    _fix_the_cause(saga_id)
    barrier = threading.Barrier(RACERS)

    def retry() -> int | str:
        barrier.wait()
        return _answer(lambda: http_api.retry_saga(saga_id))

    with ThreadPoolExecutor(RACERS) as pool:
        answers = Counter(pool.map(lambda _: retry(), range(RACERS)))

    assert answers == {202: 1, 409: RACERS - 1}
    assert finish(engine, saga_id).status == "COMPENSATED"
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
    assert_consistent()


def test_a_retry_that_asks_after_another_retrys_execution_ended_the_saga_is_refused(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    """Two retries of one FAILED saga: the second takes the lease the first gave back, while the first's execution
    still compensates, and asks Step Functions only once that execution has ended. The saga is final by then: the
    second starts nothing and gives the lease back."""
    engine = short_timeouts
    saga_id = _failed_saga(engine)
    _fix_the_cause(saga_id, refund_payment="timeout:1")  # holds the first retry's execution for a function timeout
    recovery.retry(saga_id, boto3_step_functions())

    with pytest.raises(recovery.NotRetryable, match="has just ended"):
        recovery.retry(saga_id, step_functions_answering_once_ended(engine))

    assert finish(engine, saga_id).status == "COMPENSATED"
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
    with database.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, saga_id).lease_until is None
    assert_consistent()


def test_a_retried_sagas_new_execution_audits_its_own_killed_attempts(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    """Step Functions counts a Task's attempts from 1 in each execution: the first attempt the retry's execution
    lost to a timeout is recorded, though the first execution's first attempt has its row (invariant 7; the soak
    found it missing)."""
    engine = short_timeouts
    faults = {"reserve_stock": "timeout:1", "confirm_sale": "fail", "refund_payment": "fail"}
    saga_id = finish(engine, sagas.start_saga(purchase(**faults), step_functions.start_execution).id).saga_id
    _fix_the_cause(saga_id, reserve_stock="timeout:1")

    recovery.retry(saga_id, boto3_step_functions())

    assert finish(engine, saga_id).status == "COMPENSATED"
    histories = {
        name: step_functions.execution_history(step_functions.execution_arn_for("purchase", name))
        for name in saga_executions(saga_id)
    }
    with database.UnitOfWork() as uow:
        assert invariants.unaudited_attempts(uow.session, saga_id, histories) == []
        rows = uow.session.execute(
            select(AuditEvent.execution, AuditEvent.attempt, AuditEvent.error_type)
            .where(AuditEvent.saga_id == saga_id, AuditEvent.step == "reserve_stock")
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        (saga_id, 1, "AttemptLost"),
        (saga_id, 2, None),
        (f"{saga_id}-2", 1, "AttemptLost"),
        (f"{saga_id}-2", 2, "SagaNotRunning"),
    ]


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE sagas", {}, pymysql.err.OperationalError(1213, "Deadlock found"))


def test_a_retry_that_meets_a_lock_conflict_reopening_the_saga_is_refused_and_frees_the_lease(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = _failed_saga(engine)
    _fix_the_cause(saga_id)

    def conflicting(*_: Any) -> None:
        raise _deadlock()

    with monkeypatch.context() as patched:
        patched.setattr(recovery.saga_log, "set_status", conflicting)
        with pytest.raises(recovery.NotRetryable, match="try again"):
            recovery.retry(saga_id, boto3_step_functions())

    assert status_history(saga_id)[-1] == "FAILED"
    assert recovery.retry(saga_id, boto3_step_functions()) is not None  # the refusal gave the lease back
    assert finish(engine, saga_id).status == "COMPENSATED"


def test_a_lease_that_cannot_be_given_back_does_not_hide_why_the_retry_stopped(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = stuck_saga(purchase())
    running = StepFunctions(start=pytest.fail, status=lambda arn: "RUNNING", arn_for=step_functions.execution_arn_for)

    def unreachable(*_: Any) -> None:
        raise _deadlock()

    monkeypatch.setattr(recovery, "give_back", unreachable)
    with pytest.raises(recovery.NotRetryable, match="running"):
        recovery.retry(saga_id, running)


def test_a_retry_and_a_reconciler_pass_at_once_start_one_execution(backend: Backend, engine: LocalEngine) -> None:
    """Each round races a retry against a pass over a stuck saga whose execution ended; whoever wins, the saga
    gets exactly one new execution (the start is slowed down so that the two overlap)."""
    slow = slow_step_functions()
    barrier = threading.Barrier(2)

    def reconcile() -> str:
        barrier.wait()
        return "resumed" if reconciler.reconcile(slow, grace_seconds=0).resumed else "left"

    outcomes = []
    for _ in range(2):
        saga_id = stuck_saga(purchase())
        end_first_execution(engine, saga_id)
        with ThreadPoolExecutor(2) as pool:
            retried = pool.submit(single_retry, saga_id, slow, barrier)
            passed = pool.submit(reconcile)
            outcomes.append({retried.result(), passed.result()})
        assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
        assert finish(engine, saga_id).status == "COMPLETED"

    assert all(outcome in ({"retried", "left"}, {"refused", "resumed"}) for outcome in outcomes), outcomes
    assert_consistent()


def test_a_late_forward_step_on_a_rejected_saga_refuses_to_act(backend: Backend, engine: LocalEngine) -> None:
    rejected = finish(
        engine, sagas.start_saga(purchase(sku="SKU-MONITOR", quantity=201), step_functions.start_execution).id
    )
    set_stock("SKU-MONITOR", 500)

    with pytest.raises(SagaNotRunning):
        reserve_stock.lambda_handler({"saga_id": rejected.saga_id, "retry_count": 0}, lambda_context())

    with database.UnitOfWork() as uow:
        assert uow.session.scalars(select(Reservation).where(Reservation.saga_id == rejected.saga_id)).all() == []
    assert_consistent()


def operate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "infra.tools.operate", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


# The commands' parsing, output and exit codes; the retry and the pass they run are the same code as above, tested
# on every backend. On the embedded default, as `make retry` and `make reconcile` run on a fresh machine.
@pytest.mark.backends("embedded")
def test_the_operator_commands_retry_and_reconcile(backend: Backend, engine: LocalEngine) -> None:
    failed = _failed_saga(engine)
    _fix_the_cause(failed)
    cut = stuck_saga(purchase())
    assert engine.provider is not None
    env = child_env(
        backend.database_url,
        backend.tool_redis_url,
        SAGA_ALLOW_FAULTS="true",
        PAYMENT_PROVIDER_URL=engine.provider.url,
        LOCAL_TIME_SCALE=str(TEST_RETRY_WAIT_SCALE),
    )

    retried = operate(env, "retry", failed)
    reconciled = operate(env, "reconcile", "--grace", "0")
    refused = operate(env, "retry", failed)

    assert retried.returncode == 0, retried.stderr[-2000:]
    assert f"{failed} COMPENSATED" in retried.stdout
    assert reconciled.returncode == 0, reconciled.stderr[-2000:]
    assert "found 1 stuck saga(s), resumed 1" in reconciled.stdout
    assert f"{cut} COMPLETED" in reconciled.stdout
    assert refused.returncode == 1 and "only a FAILED or a stuck saga can be retried" in refused.stderr
    assert_consistent()
