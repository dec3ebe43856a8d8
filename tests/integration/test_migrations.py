"""Alembic migrations: they match the models, upgrade a database that holds data, and run from Lambda."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from chalicelib.adapters import database
from chalicelib.settings import get_settings
from functions import migrate
from tests.conftest import Backend


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def test_migrations_describe_exactly_the_models(backend: Backend) -> None:
    command.check(_config(backend.database_url))  # raises if models and migrations differ


def test_upgrading_a_database_with_sagas_keeps_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sagas (id, type, status, input, result, created_at, updated_at, version) "
                "VALUES ('a', 'purchase', 'COMPLETED', '{}', '{}', '2026-01-01', '2026-01-01', 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO audit_log (saga_id, step, action, status, attempt, payload, created_at) "
                "VALUES ('a', 'saga', 'saga', 'COMPLETED', 1, '{}', '2026-01-01')"
            )
        )

    database.migrate(url)

    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, status FROM sagas")).all() == [("a", "COMPLETED")]
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
    assert "idempotency_key" in {column["name"] for column in inspect(engine).get_columns("sagas")}
    command.downgrade(_config(url), "base")
    assert inspect(engine).get_table_names() == ["alembic_version"]


def test_the_migration_function_migrates_and_seeds_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'deployed.db'}"
    monkeypatch.setattr(get_settings(), "database_url", url)
    database.reset_engine()
    try:
        assert migrate.lambda_handler({}, None) == {"migrated": True, "products_added": 0}
        assert migrate.lambda_handler({"seed": True}, None) == {"migrated": True, "products_added": 5}
        assert migrate.lambda_handler({"seed": True}, None) == {"migrated": True, "products_added": 0}
    finally:
        database.reset_engine()
