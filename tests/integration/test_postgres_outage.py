"""A long PostgreSQL outage: the steps fail as retryable, the execution gives up, and nothing is half-done:
once the database is back, recovery runs the saga to a final status.

The test runs its own PostgreSQL cluster, which it stops and starts; it never touches the machine's server.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from chalicelib import catalogue, db, executions, recovery, sagas
from chalicelib.config import get_settings
from chalicelib.models import Saga
from infra.local_engine import LocalEngine
from infra.postgres_server import PrivatePostgres
from tests.conftest import Backend
from tests.helpers import assert_consistent, finish, purchase


@pytest.fixture
def private_postgres(backend: Backend) -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp_path: its parent is private to root and the server runs as postgres.
    directory = tempfile.TemporaryDirectory(prefix="saga-pg-")
    server = PrivatePostgres(Path(directory.name))
    server.create()
    server.start()
    get_settings().database_url = server.url  # the backend fixture restores the setting
    db.reset_engine()
    db.migrate()
    with db.UnitOfWork() as uow:
        catalogue.seed(uow.session)
        uow.commit()
    try:
        yield server
    finally:
        db.reset_engine()
        server.stop()
        directory.cleanup()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_long_database_outage_leaves_nothing_half_done(
    backend: Backend, engine: LocalEngine, private_postgres: PrivatePostgres
) -> None:
    def start_during_an_outage(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        private_postgres.stop()
        return executions.start_execution(saga_type, name, execution_input)

    with pytest.raises(DBAPIError):  # recording the execution fails too: the client is told it failed
        sagas.start_saga(purchase(), start_during_an_outage)
    started = executions.sfn_client().list_executions(stateMachineArn=executions.state_machine_arn("purchase"))
    arn = max(started["executions"], key=lambda execution: execution["startDate"])["executionArn"]
    outcome = engine.wait(arn)
    history = executions.states_entered(executions.execution_history(arn))
    saga_id = arn.rsplit(":", 1)[1]

    # Every step attempt was refused as retryable, retried, then compensated; the compensations could not
    # reach the database either, so the execution gave up.
    assert outcome["status"] == "FAILED"
    assert history == [("ReserveStock", 4), ("RefundPayment", 6), ("CompensationFailed", 0)]

    private_postgres.start()
    db.reset_engine()
    with db.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        assert (saga.status, saga.execution_arn) == ("RUNNING", None)
    resumed = recovery.resume_unfinished(
        executions.start_execution, executions.execution_status, executions.execution_arn_for
    )
    assert resumed == [saga_id]

    assert finish(engine, saga_id).status == "COMPLETED"
    assert_consistent()
