"""The status cache's read path, refused faults, and an unreachable database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from chalicelib.adapters import database, saga_cache, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain.errors import DatabaseUnavailable
from chalicelib.service import sagas
from chalicelib.settings import get_settings
from functions import reserve_stock
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import finish, lambda_context, product, purchase, run_saga


def test_saga_is_read_from_the_cache_first(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase())
    assert sagas.read_saga(run.saga_id)["status"] == "COMPLETED"  # type: ignore[index]
    version = saga_cache.cached_status(run.saga_id)["version"]  # type: ignore[index]
    saga_cache.get_redis().set(
        saga_cache.VIEW_KEY.format(saga_id=run.saga_id, version=version), '{"served": "from cache"}'
    )

    assert sagas.read_saga(run.saga_id) == {"served": "from cache"}


def test_saga_missing_from_the_cache_is_read_from_the_database_and_cached_again(
    backend: Backend, engine: LocalEngine
) -> None:
    run = run_saga(engine, purchase())
    saga_cache.get_redis().flushdb()

    view = sagas.read_saga(run.saga_id)

    assert view is not None and view["status"] == "COMPLETED"
    assert [step["name"] for step in view["steps"]] == ["reserve_stock", "process_payment", "confirm_sale"]
    assert view["result"] == run.result
    assert saga_cache.cached_view(run.saga_id) == view


def test_a_cached_view_is_never_served_after_the_saga_changed(backend: Backend) -> None:
    saga_id = sagas.start_saga(purchase(), lambda *_: "arn").id
    assert sagas.read_saga(saga_id)["steps"] == []  # type: ignore[index]

    reserve_stock.lambda_handler({"saga_id": saga_id}, lambda_context())

    view = sagas.read_saga(saga_id)
    assert view is not None
    assert view["steps"] == [
        {"name": "reserve_stock", "action": "execute", "status": "SUCCEEDED", "attempts": 1, "error": None}
    ]


def test_unknown_saga_reads_as_none(backend: Backend) -> None:
    assert sagas.read_saga("f" * 32) is None
    assert sagas.read_history("f" * 32) is None


def test_unreachable_cache_falls_back_to_the_database(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase())
    settings = get_settings()
    settings.redis_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    saga_cache.reset_redis()

    assert sagas.read_saga(run.saga_id)["status"] == "COMPLETED"  # type: ignore[index]


def test_faults_are_refused_unless_allowed(backend: Backend) -> None:
    get_settings().allow_faults = False

    with pytest.raises(sagas.FaultsNotAllowed, match="SAGA_ALLOW_FAULTS"):
        sagas.start_saga(purchase(confirm_sale="fail"), lambda *_: "unused")
    with database.UnitOfWork() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Saga)) == 0


def test_unreachable_database_is_a_retryable_step_error(backend: Backend) -> None:
    saga_id = sagas.start_saga(purchase(), lambda *_: "arn").id
    get_settings().database_url = "postgresql+pg8000://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    database.reset_engine()

    with pytest.raises(DatabaseUnavailable) as raised:
        reserve_stock.lambda_handler({"saga_id": saga_id}, lambda_context())
    assert raised.value.retryable


def test_a_retried_start_never_runs_the_saga_twice(backend: Backend, engine: LocalEngine) -> None:
    def start_then_crash(saga_type: str, saga_id: str, execution_input: dict[str, object]) -> str:
        step_functions.start_execution(saga_type, saga_id, execution_input)
        raise ConnectionError("lost the answer of StartExecution")

    with pytest.raises(ConnectionError):
        sagas.start_saga(purchase(), start_then_crash, idempotency_key="retry-me")

    saga = sagas.start_saga(purchase(), step_functions.start_execution, idempotency_key="retry-me")

    run = finish(engine, saga.id)
    assert run.status == "COMPLETED"
    listed = step_functions.sfn_client().list_executions(stateMachineArn=step_functions.state_machine_arn("purchase"))
    assert [e["name"] for e in listed["executions"]].count(saga.id) == 1
    assert product("SKU-MOUSE").on_hand == 998


def test_a_late_cache_write_never_replaces_a_newer_status(backend: Backend) -> None:
    saga_cache.cache_status("a" * 32, "COMPLETED", 5)
    saga_cache.cache_status("a" * 32, "RUNNING", 3)

    assert saga_cache.cached_status("a" * 32) == {"status": "COMPLETED", "version": 5}
