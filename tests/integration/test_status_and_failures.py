"""The status cache's read path, refused faults, and an unreachable database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from chalicelib import cache, db, sagas
from chalicelib.config import get_settings
from chalicelib.errors import DatabaseUnavailable
from chalicelib.models import Saga
from functions import reserve_stock
from infra.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import lambda_context, purchase, run_saga


def test_status_is_read_from_the_cache_first(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase())
    cache.cache_status(run.saga_id, "CACHED-VALUE", 99)

    assert sagas.saga_status(run.saga_id) == "CACHED-VALUE"


def test_status_missing_from_the_cache_is_read_from_the_database_and_cached_again(
    backend: Backend, engine: LocalEngine
) -> None:
    run = run_saga(engine, purchase())
    cache.get_redis().flushdb()

    assert sagas.saga_status(run.saga_id) == "COMPLETED"
    assert cache.cached_status(run.saga_id) == {"status": "COMPLETED", "version": 2}


def test_unknown_saga_has_no_status(backend: Backend) -> None:
    assert sagas.saga_status("f" * 32) is None


def test_unreachable_cache_falls_back_to_the_database(backend: Backend, engine: LocalEngine) -> None:
    run = run_saga(engine, purchase())
    settings = get_settings()
    settings.redis_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    cache.reset_redis()

    assert sagas.saga_status(run.saga_id) == "COMPLETED"


def test_faults_are_refused_unless_allowed(backend: Backend) -> None:
    get_settings().allow_faults = False

    with pytest.raises(sagas.FaultsNotAllowed, match="SAGA_ALLOW_FAULTS"):
        sagas.start_saga(purchase(confirm_sale="fail"), lambda *_: "unused")
    with db.UnitOfWork() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Saga)) == 0


def test_unreachable_database_is_a_retryable_step_error(backend: Backend) -> None:
    saga_id = sagas.start_saga(purchase(), lambda *_: "arn").id
    get_settings().database_url = "postgresql+pg8000://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    db.reset_engine()

    with pytest.raises(DatabaseUnavailable) as raised:
        reserve_stock.lambda_handler({"saga_id": saga_id}, lambda_context())
    assert raised.value.retryable
