"""The local engine deploys the template as SAM would (docs/design.md §7.3): every function published behind its
alias `live`, and each Task of the state machines invoking that alias."""

from __future__ import annotations

import json

import boto3
import pytest

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import purchase, run_saga


@pytest.mark.parametrize("backend_name", ["embedded"])
def test_each_task_invokes_its_function_s_alias_live(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase())
    with database.UnitOfWork() as uow:
        arn = str(uow.session.get_one(Saga, run.saga_id).execution_arn)

    invoked = [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["FunctionName"]
        for event in step_functions.execution_history(arn)
        if event["type"] == "TaskScheduled"
    ]

    assert invoked == [f"{engine.function_arns[f'{state}Function']}:live" for state, _ in run.path[:-1]]
    aliases = boto3.client("lambda").list_aliases(FunctionName="ReserveStockFunction")["Aliases"]
    assert [(alias["Name"], alias["FunctionVersion"]) for alias in aliases] == [("live", "1")]
