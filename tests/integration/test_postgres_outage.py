"""A long PostgreSQL outage: the steps fail as retryable, the execution gives up, and nothing is half-done:
once the database is back, the reconciler runs the saga to a final status.

The test runs its own PostgreSQL cluster, which it stops and starts; it never touches the machine's server.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain import catalogue
from chalicelib.service import reconciler, sagas
from chalicelib.service.executions import boto3_step_functions
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from infra.engine.postgres_server import PrivatePostgres
from tests.conftest import Backend
from tests.helpers import assert_consistent, finish, purchase, saga_executions


@pytest.fixture
def private_postgres(backend: Backend) -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp_path: its parent is private to root and the server runs as postgres.
    directory = tempfile.TemporaryDirectory(prefix="saga-pg-")
    server = PrivatePostgres(Path(directory.name))
    server.create()
    server.start()
    get_settings().database_url = server.url  # the backend fixture restores the setting
    database.reset_engine()
    database.migrate()
    with database.UnitOfWork() as uow:
        catalogue.seed(uow.session)
        uow.commit()
    try:
        yield server
    finally:
        database.reset_engine()
        server.stop()
        directory.cleanup()


@pytest.mark.backends("postgres")
def test_a_long_database_outage_leaves_nothing_half_done(
    backend: Backend, engine: LocalEngine, private_postgres: PrivatePostgres
) -> None:
    def start_during_an_outage(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        private_postgres.stop()
        return step_functions.start_execution(saga_type, name, execution_input)

    # The execution started, so the client is told so, though its ARN could not be recorded.
    saga_id = sagas.start_saga(purchase(), start_during_an_outage).id
    started = step_functions.sfn_client().list_executions(stateMachineArn=step_functions.state_machine_arn("purchase"))
    arn = max(started["executions"], key=lambda execution: execution["startDate"])["executionArn"]
    outcome = engine.wait(arn)
    history = step_functions.states_entered(step_functions.execution_history(arn))
    assert arn.rsplit(":", 1)[1] == saga_id

    # Every step attempt was refused as retryable, retried, then compensated; the compensations could not
    # reach the database either, nor could the task that records the saga FAILED: the execution gave up.
    assert outcome["status"] == "FAILED"
    assert history == [("ReserveStock", 4), ("RefundPayment", 6), ("CompensationFailed", 6), ("Failed", 0)]

    private_postgres.start()
    database.reset_engine()
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        assert (saga.status, saga.execution_arn) == ("RUNNING", None)
    resumed = reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed
    assert resumed == [saga_id]

    assert finish(engine, saga_id).status == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
    assert_consistent()
