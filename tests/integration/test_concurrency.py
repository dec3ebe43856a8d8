"""Sagas racing for the last units of one product never oversell it."""

from __future__ import annotations

from collections import Counter

import pytest
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

from chalicelib.adapters import step_functions
from chalicelib.service import sagas
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import assert_consistent, finish, give_back, product, purchase, set_stock

RACERS = 24
UNITS_LEFT = 5


@pytest.mark.alone  # the racers' functions at once, each holding a database connection
def test_racing_purchases_never_oversell_the_last_units(backend: Backend, engine: LocalEngine) -> None:
    set_stock("SKU-WEBCAM", UNITS_LEFT)

    # Executions run on the interpreter's own threads: starting them back to back makes them race.
    started = [
        sagas.start_saga(purchase(sku="SKU-WEBCAM", quantity=1), step_functions.start_execution) for _ in range(RACERS)
    ]
    runs = [finish(engine, saga.id) for saga in started]

    outcomes = Counter(run.status for run in runs)
    assert outcomes == {"COMPLETED": UNITS_LEFT, "REJECTED": RACERS - UNITS_LEFT}
    webcam = product("SKU-WEBCAM")
    assert (webcam.on_hand, webcam.reserved) == (0, 0)
    assert_consistent()


def test_racing_returns_of_one_order_never_return_more_than_was_bought(backend: Backend, engine: LocalEngine) -> None:
    bought = finish(engine, sagas.start_saga(purchase(quantity=3), step_functions.start_execution).id)
    order_id = bought.result["order_id"]

    started = [sagas.start_saga(give_back(order_id, quantity=1), step_functions.start_execution) for _ in range(8)]
    runs = [finish(engine, saga.id) for saga in started]

    assert Counter(run.status for run in runs) == {"COMPLETED": 3, "REJECTED": 5}
    assert product("SKU-MOUSE").on_hand == 1000
    assert_consistent()


def test_executions_parse_their_definitions_with_scopes_of_their_own(engine: LocalEngine) -> None:
    """moto shares one scope list between every parse, and concurrent executions parse on their own threads; a
    corrupted list kills an execution's thread and leaves the saga RUNNING (infra/engine/local_engine.py)."""
    first, second = Preprocessor(), Preprocessor()

    assert first._query_language_per_scope is not second._query_language_per_scope
