"""Sagas cut short by a dead process are brought to a final status by running their execution again."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import func, select, update

from app import app
from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Payment, Product, Reservation, Saga
from chalicelib.domain.errors import SagaNotRunning
from chalicelib.service import recovery, sagas
from functions import confirm_sale, process_payment, refund_payment, reserve_stock
from infra.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import assert_consistent, child_env, final_view, finish, lambda_context, purchase, status_history

ROOT = Path(__file__).resolve().parents[2]
LOST = "arn:aws:states:us-east-1:123456789012:execution:PurchaseSagaStateMachine:lost"


def _recorded(request: Any, arn: str | None = LOST) -> str:
    """A saga whose record exists but whose execution died with the process (or never started)."""
    saga_id = sagas.start_saga(request, lambda *_: LOST).id
    with database.UnitOfWork() as uow:
        uow.session.execute(update(Saga).where(Saga.id == saga_id).values(execution_arn=arn))
        uow.commit()
    return saga_id


def _deliver(saga_id: str, *handlers: Callable[[Any, Any], Any]) -> None:
    for handler in handlers:
        with contextlib.suppress(Exception):
            handler({"saga_id": saga_id}, lambda_context())


def _count(model: type[Any], saga_id: str) -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(model.saga_id == saga_id)) or 0)


def test_a_saga_whose_execution_never_started_is_run(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _recorded(purchase(), arn=None)

    assert recovery.resume_unfinished(
        step_functions.start_execution, step_functions.execution_status, step_functions.execution_arn_for
    ) == [saga_id]

    assert finish(engine, saga_id).status == "COMPLETED"
    assert_consistent()


def test_a_saga_cut_after_two_steps_completes_without_a_second_reservation_or_charge(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = _recorded(purchase())
    _deliver(saga_id, reserve_stock.lambda_handler, process_payment.lambda_handler)

    recovery.resume_unfinished(
        step_functions.start_execution, step_functions.execution_status, step_functions.execution_arn_for
    )

    run = finish(engine, saga_id)
    assert run.status == "COMPLETED"
    assert run.path[-1] == ("Completed", 0)
    assert _count(Reservation, saga_id) == _count(Payment, saga_id) == 1
    assert_consistent()


def test_a_saga_cut_while_compensating_ends_compensated(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _recorded(purchase(confirm_sale="fail"))
    _deliver(
        saga_id,
        reserve_stock.lambda_handler,
        process_payment.lambda_handler,
        confirm_sale.lambda_handler,
        refund_payment.lambda_handler,
    )
    with database.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, saga_id).status == "COMPENSATING"

    recovery.resume_unfinished(
        step_functions.start_execution, step_functions.execution_status, step_functions.execution_arn_for
    )

    assert finish(engine, saga_id).status == "COMPENSATED"
    assert_consistent()


def test_running_and_final_sagas_are_left_alone(backend: Backend, engine: LocalEngine) -> None:
    done = finish(engine, sagas.start_saga(purchase(), step_functions.start_execution).id)
    running = _recorded(purchase())

    resumed = recovery.resume_unfinished(
        pytest.fail,
        lambda arn: "RUNNING" if arn == LOST else step_functions.execution_status(arn),
        step_functions.execution_arn_for,
    )

    assert resumed == []
    with database.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, done.saga_id).status == "COMPLETED"
        assert uow.session.get_one(Saga, running).status == "RUNNING"


def _fix_the_cause(saga_id: str) -> None:
    """The world is mended: the request's injected compensation fault is gone."""
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        saga.input = {**saga.input, "faults": {"confirm_sale": "fail"}}
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
    with database.UnitOfWork() as uow:
        assert uow.session.scalars(select(Payment.status).where(Payment.saga_id == saga_id)).one() == "REFUNDED"
    assert_consistent()


def test_retrying_a_saga_that_is_not_failed_is_a_conflict_and_an_unknown_one_is_404(
    backend: Backend, engine: LocalEngine
) -> None:
    done = finish(engine, sagas.start_saga(purchase(), step_functions.start_execution).id)
    with Client(app) as client:
        conflict = client.http.post(f"/sagas/{done.saga_id}/retry")
        unknown = client.http.post(f"/sagas/{'0' * 32}/retry")

    assert (conflict.status_code, conflict.json_body["error"]) == (409, "NotRetryable")
    assert (unknown.status_code, unknown.json_body["error"]) == (404, "NotFound")
    assert status_history(done.saga_id) == ["RUNNING", "COMPLETED"]


def test_a_late_forward_step_on_a_rejected_saga_refuses_to_act(backend: Backend, engine: LocalEngine) -> None:
    rejected = finish(
        engine, sagas.start_saga(purchase(sku="SKU-MONITOR", quantity=201), step_functions.start_execution).id
    )
    with database.UnitOfWork() as uow:
        uow.session.execute(update(Product).where(Product.sku == "SKU-MONITOR").values(on_hand=500))
        uow.session.execute(update(Product).where(Product.sku == "SKU-MONITOR").values(initial_on_hand=500))
        uow.commit()

    with pytest.raises(SagaNotRunning):
        reserve_stock.lambda_handler({"saga_id": rejected.saga_id, "retry_count": 0}, lambda_context())

    assert _count(Reservation, rejected.saga_id) == 0
    assert_consistent()


def operate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "infra.operate", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_operator_commands_retry_and_recover(backend: Backend, engine: LocalEngine) -> None:
    failed = _failed_saga(engine)
    _fix_the_cause(failed)
    cut = _recorded(purchase())
    assert engine.provider is not None
    env = child_env(
        backend.database_url, backend.tool_redis_url, SAGA_ALLOW_FAULTS="true", PAYMENT_PROVIDER_URL=engine.provider.url
    )

    retried = operate(env, "retry", failed)
    recovered = operate(env, "recover")
    refused = operate(env, "retry", failed)

    assert retried.returncode == 0, retried.stderr[-2000:]
    assert f"{failed} COMPENSATED" in retried.stdout
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert f"{cut} COMPLETED" in recovered.stdout
    assert refused.returncode == 1 and "only a FAILED saga can be retried" in refused.stderr
    assert_consistent()
