"""The mocks of MockConfigFile.json stay in step with the real handlers.

Each named test case is run on the real handlers (moto's interpreter, the request that drives that path):
the execution must take the case's path, and each Task attempt must answer as its mock does, the same
error name for a Throw, the same shape (keys and value types) of Payload for a Return.
"""

from __future__ import annotations

import pytest

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import run_saga
from tests.saga_cases import CASES, RETURN_MACHINE, SagaCase, mocked_attempts, shape, task_outcomes

pytestmark = pytest.mark.backends("postgres")
"""The mocks must answer as the handlers do: names and shapes of answers, the same on every backend. So one
backend: PostgreSQL, the deployed default."""


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_real_handlers_take_the_mocked_path_and_answer_as_the_mocks(
    backend: Backend, engine: LocalEngine, case: SagaCase
) -> None:
    order_id = ""
    if case.machine == RETURN_MACHINE:
        bought = run_saga(engine, next(c for c in CASES if c.name == "HappyPath").request(""))
        order_id = bought.result["order_id"]

    run = run_saga(engine, case.request(order_id))

    assert (run.status, run.execution_status) == (case.saga_status, case.execution_status)
    assert tuple(run.path) == case.path
    with database.UnitOfWork() as uow:
        arn = str(uow.session.get_one(Saga, run.saga_id).execution_arn)
    real = task_outcomes(step_functions.execution_history(arn))
    mocked = mocked_attempts(case)
    assert set(real) == set(mocked)
    for state, attempts in mocked.items():
        assert len(real[state]) == len(attempts), state
        for mock, actual in zip(attempts, real[state], strict=True):
            if "Throw" in mock:
                assert actual.get("Throw", {}).get("Error") == mock["Throw"]["Error"], (state, actual)
            else:
                assert "Return" in actual, (state, actual)
                assert actual["Return"]["StatusCode"] == mock["Return"]["StatusCode"], state
                assert shape(actual["Return"]["Payload"]) == shape(mock["Return"]["Payload"]), state
