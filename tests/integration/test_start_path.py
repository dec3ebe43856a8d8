"""Starting a saga when Step Functions does not answer, and when the answer is lost (docs/design.md §3.1, §3.3):
the API says 503 with Retry-After, the saga stays recorded, and the same Idempotency-Key starts it, also when
its execution had in fact started (a cut between StartExecution and the write of its ARN)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from chalice.test import Client
from sqlalchemy import select

from app import app
from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.service import reconciler, sagas
from chalicelib.service.executions import boto3_step_functions
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import assert_consistent, final_view, finish, losing_deadlocks, purchase, saga_executions

JSON = {"Content-Type": "application/json"}
BODY = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": "tok_visa"}


class _Unreachable:
    """A Step Functions client whose StartExecution fails as boto3 fails: no connection, or a throttle."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def start_execution(self, **_: Any) -> dict[str, Any]:
        raise self.error


THROTTLED = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")
NO_CONNECTION = EndpointConnectionError(endpoint_url="https://states.us-east-1.amazonaws.com")


@pytest.fixture(params=[THROTTLED, NO_CONNECTION], ids=["throttled", "no-connection"])
def step_functions_down(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(step_functions, "sfn_client", lambda: _Unreachable(request.param))
    yield
    monkeypatch.undo()


def _saga(saga_id: str) -> Saga:
    with database.UnitOfWork() as uow:
        return uow.session.get_one(Saga, saga_id)


def test_a_start_step_functions_refuses_is_a_503_with_retry_after_and_the_same_key_then_starts_it(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch, step_functions_down: None
) -> None:
    headers = JSON | {"Idempotency-Key": "order-503"}
    with Client(app) as client:
        refused = client.http.post("/purchases", headers=headers, body=json.dumps(BODY))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        assert refused.json_body["error"] == "ServiceUnavailable"
        saga_id = refused.json_body["message"].split()[1]
        assert (_saga(saga_id).status, _saga(saga_id).execution_arn) == ("RUNNING", None)

        monkeypatch.undo()  # Step Functions is back
        accepted = client.http.post("/purchases", headers=headers, body=json.dumps(BODY))
        assert (accepted.status_code, accepted.json_body["saga_id"]) == (202, saga_id)
        assert final_view(client, saga_id)["status"] == "COMPLETED"

    assert saga_executions(saga_id) == [saga_id]
    assert_consistent()


def test_without_a_key_the_503_names_the_saga_and_the_reconciler_starts_it(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_functions, "sfn_client", lambda: _Unreachable(THROTTLED))
    with Client(app) as client:
        refused = client.http.post("/purchases", headers=JSON, body=json.dumps(BODY))
    monkeypatch.undo()
    saga_id = refused.json_body["message"].split()[1]

    assert refused.status_code == 503 and f"GET /sagas/{saga_id}" in refused.json_body["message"]
    assert reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed == [saga_id]
    assert finish(engine, saga_id).status == "COMPLETED"


def _cut_after_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies between StartExecution and the write of the execution's ARN (dropped connections)."""

    def dies(saga: Saga, arn: str) -> None:
        raise ConnectionResetError("the database connection dropped")

    monkeypatch.setattr(sagas, "_record_execution", dies)


@pytest.mark.parametrize("finished", [False, True], ids=["running", "finished"])
def test_a_start_cut_before_its_arn_was_written_is_resumed_by_the_same_key_without_a_second_execution(
    backend: Backend, short_timeouts: LocalEngine, monkeypatch: pytest.MonkeyPatch, finished: bool
) -> None:
    engine = short_timeouts
    request = purchase() if finished else purchase(reserve_stock="timeout:1")
    _cut_after_the_start(monkeypatch)
    with pytest.raises(ConnectionResetError):
        sagas.start_saga(request, step_functions.start_execution, "order-cut")
    monkeypatch.undo()
    with database.UnitOfWork() as uow:
        saga = uow.session.scalars(select(Saga).where(Saga.idempotency_key == "order-cut")).one()
    arn = step_functions.execution_arn_for("purchase", saga.id)
    if finished:
        assert engine.wait(arn)["status"] == "SUCCEEDED"
    else:
        assert step_functions.execution_status(arn) == "RUNNING"

    again = sagas.start_saga(request, step_functions.start_execution, "order-cut")

    assert (again.id, again.execution_arn, _saga(saga.id).execution_arn) == (saga.id, arn, arn)
    assert finish(engine, saga.id).status == "COMPLETED"
    assert saga_executions(saga.id) == [saga.id]
    assert_consistent()


@pytest.mark.backends("mysql")
def test_an_arn_write_that_loses_a_deadlock_to_the_first_step_is_run_again_and_recorded(
    backend: Backend, engine: LocalEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen on MariaDB: the first step's transaction and the ARN's UPDATE deadlocked on the saga's row (1213), and
    the ARN was never written. The server rolled the UPDATE back and asked for it again, so it is run again."""

    def arn_write(statement: str, _: Any) -> bool:
        return statement.startswith("UPDATE sagas SET execution_arn")

    with losing_deadlocks(arn_write, 1) as lost:
        saga = sagas.start_saga(purchase(), step_functions.start_execution)

    assert lost, "the first ARN write met the deadlock"
    assert _saga(saga.id).execution_arn == saga.execution_arn is not None
    assert "could not be recorded" not in caplog.text
    assert finish(engine, saga.id).status == "COMPLETED"
