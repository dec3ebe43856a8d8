"""Alembic migrations: they match the models, upgrade a database that holds data, and run from Lambda, on every
deploy as a CloudFormation custom resource that answers for itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from chalicelib.adapters import database
from chalicelib.settings import get_settings
from functions import migrate
from tests.conftest import ADMIN_DATABASE_URL, ADMIN_MYSQL_URL, Backend
from tests.helpers import throwaway_database


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


class _CloudFormation:
    """The pre-signed S3 URL a custom resource answers to: records each PUT (its body and Content-Type)."""

    def __init__(self) -> None:
        self.answers: list[tuple[dict[str, Any], str | None]] = []
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answers.append((json.loads(body), self.headers.get("Content-Type")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def request(self, request_type: str, version: str = "3", **extra: Any) -> dict[str, Any]:
        host, port = self.server.server_address[:2]
        return {
            "RequestType": request_type,
            "ResponseURL": f"http://{host}:{port}/cloudformation-custom-resource-response?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/saga/1",
            "RequestId": f"{request_type}-request",
            "ResourceType": "AWS::CloudFormation::CustomResource",
            "LogicalResourceId": "DatabaseMigration",
            "ResourceProperties": {
                "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:Migrate:live",
                "MigrateFunctionVersion": f"arn:aws:lambda:us-east-1:123456789012:function:Migrate:{version}",
            },
            **extra,
        }


@pytest.fixture
def cloudformation() -> Iterator[_CloudFormation]:
    answering = _CloudFormation()
    yield answering
    answering.server.shutdown()


@pytest.fixture
def deployed_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'deployed.db'}"
    monkeypatch.setattr(get_settings(), "database_url", url)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "3")
    database.reset_engine()
    yield url
    database.reset_engine()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    with engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar() if tables else None
    engine.dispose()
    return revision


def test_the_custom_resource_migrates_on_create_and_answers_cloudformation_itself(
    cloudformation: _CloudFormation, deployed_database: str
) -> None:
    migrate.lambda_handler(cloudformation.request("Create"), None)

    [(answer, content_type)] = cloudformation.answers
    assert answer == {
        "Status": "SUCCESS",
        "Reason": "Create done",
        "PhysicalResourceId": "DatabaseMigration",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/saga/1",
        "RequestId": "Create-request",
        "LogicalResourceId": "DatabaseMigration",
        "Data": {"Revision": _revision(deployed_database)},
    }
    assert content_type == ""  # what the pre-signed URL was signed for
    assert _revision(deployed_database) == ScriptDirectory(str(database.MIGRATIONS_DIR)).get_current_head()


def test_a_failed_migration_answers_failed_so_that_the_deploy_rolls_back(
    cloudformation: _CloudFormation, deployed_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(url: str | None = None) -> str:
        raise RuntimeError("column already exists")

    monkeypatch.setattr(database, "migrate_for_deploy", broken)
    event = cloudformation.request("Update", PhysicalResourceId="DatabaseMigration")

    migrate.lambda_handler(event, SimpleNamespace(log_stream_name="2026/11/29/[3]abc"))

    [(answer, _)] = cloudformation.answers
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("FAILED", "DatabaseMigration")
    assert answer["Reason"] == "RuntimeError: column already exists (log stream 2026/11/29/[3]abc)"


def test_a_rollback_asking_for_the_previous_version_and_a_delete_touch_no_data(
    cloudformation: _CloudFormation, deployed_database: str
) -> None:
    rollback = cloudformation.request("Update", version="2", PhysicalResourceId="DatabaseMigration")
    delete = cloudformation.request("Delete", PhysicalResourceId="DatabaseMigration")

    migrate.lambda_handler(rollback, None)
    migrate.lambda_handler(delete, None)

    assert [answer["Status"] for answer, _ in cloudformation.answers] == ["SUCCESS", "SUCCESS"]
    assert cloudformation.answers[0][0]["Data"]["Revision"] == "unchanged"
    assert _revision(deployed_database) is None  # neither touched the (empty) database


def test_a_database_past_this_code_s_newest_revision_is_left_as_it_is(deployed_database: str) -> None:
    database.migrate(deployed_database)
    engine = create_engine(deployed_database)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    assert database.migrate_for_deploy() == "9999"
    assert _revision(deployed_database) == "9999"


MYSQL_COLLATIONS = """
SELECT table_collation FROM information_schema.tables
 WHERE table_schema = DATABASE() AND table_name <> 'alembic_version'
UNION SELECT collation_name FROM information_schema.columns
 WHERE table_schema = DATABASE() AND table_name <> 'alembic_version' AND collation_name IS NOT NULL
"""
MYSQL_DEFAULT_COLLATION = (
    "SELECT default_collation_name FROM information_schema.schemata WHERE schema_name = DATABASE()"
)


def _mysql_collations(url: str) -> tuple[set[str], str, bool]:
    """The collations of the database's tables and their text columns; the database's default; whether the server
    is MariaDB."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(connection.execute(text(MYSQL_COLLATIONS)).scalars())
            default = connection.execute(text(MYSQL_DEFAULT_COLLATION)).scalar_one()
            mariadb = "MariaDB" in connection.execute(text("SELECT VERSION()")).scalar_one()
            return tables, default, mariadb
    finally:
        engine.dispose()


def test_on_mysql_every_table_and_the_database_default_compare_without_padding() -> None:
    """Revision 0008 moves MySQL/MariaDB from utf8mb4_bin (PAD SPACE: 'k' = 'k ') to the server's binary NO PAD
    collation, also as the database's default for tables made later; its downgrade moves the tables back."""
    with throwaway_database(ADMIN_MYSQL_URL, "saga_collation") as url:
        command.upgrade(_config(url), "0007")
        assert _mysql_collations(url)[0] == {"utf8mb4_bin"}
        command.upgrade(_config(url), "head")
        tables, default, mariadb = _mysql_collations(url)
        no_pad = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
        assert (tables, default) == ({no_pad}, no_pad)
        command.downgrade(_config(url), "0007")
        assert _mysql_collations(url)[0] == {"utf8mb4_bin"}


@pytest.fixture
def database_at_0010(backend: Backend, tmp_path: Path) -> Iterator[str]:
    if backend.name == "embedded":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin = ADMIN_MYSQL_URL if backend.name == "mysql" else ADMIN_DATABASE_URL
    with throwaway_database(admin, "saga_buckets") as url:
        yield url


def test_the_stock_buckets_migration_keeps_each_product_s_stock_and_its_held_units(database_at_0010: str) -> None:
    url = database_at_0010
    command.upgrade(_config(url), "0010")
    engine = create_engine(url)
    with engine.begin() as connection:
        for sku, on_hand, reserved in (("SKU-A", 100, 7), ("SKU-B", 5, 0), ("SKU-C", 0, 0)):
            connection.execute(
                text(
                    "INSERT INTO products (sku, name, price_cents, on_hand, reserved, initial_on_hand)"
                    " VALUES (:sku, 'p', 100, :on_hand, :reserved, 120)"
                ),
                {"sku": sku, "on_hand": on_hand, "reserved": reserved},
            )
        connection.execute(
            text(
                "INSERT INTO sagas (id, type, status, input, result, created_at, updated_at, version, executions)"
                " VALUES ('s1', 'purchase', 'RUNNING', '{}', '{}', '2026-01-01', '2026-01-01', 1, 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO reservations (saga_id, sku, quantity, unit_price_cents, status, created_at, updated_at)"
                " VALUES ('s1', 'SKU-A', 7, 100, 'RESERVED', '2026-01-01', '2026-01-01')"
            )
        )

    command.upgrade(_config(url), "0011")

    with engine.connect() as connection:
        totals = connection.execute(
            text(
                "SELECT sku, COUNT(*), SUM(on_hand), SUM(reserved), MIN(on_hand - reserved), MAX(on_hand - reserved)"
                " FROM stock_buckets GROUP BY sku ORDER BY sku"
            )
        ).all()
        held = connection.execute(
            text("SELECT on_hand, reserved FROM stock_buckets WHERE bucket = 0 AND sku = 'SKU-A'")
        )
        reservation_bucket = connection.execute(text("SELECT bucket FROM reservations")).scalar()
        buckets = connection.execute(text("SELECT sku, buckets FROM products ORDER BY sku")).all()
    assert [tuple(int(n) for n in row[1:]) for row in totals] == [
        (16, 100, 7, 5, 6),
        (16, 5, 0, 0, 1),
        (16, 0, 0, 0, 0),
    ]
    assert tuple(held.one()) == (7 + 6, 7) and reservation_bucket == 0
    assert [tuple(row) for row in buckets] == [("SKU-A", 16), ("SKU-B", 16), ("SKU-C", 16)]

    command.downgrade(_config(url), "0010")

    with engine.connect() as connection:
        products = connection.execute(text("SELECT sku, on_hand, reserved FROM products ORDER BY sku")).all()
    assert [tuple(row) for row in products] == [("SKU-A", 100, 7), ("SKU-B", 5, 0), ("SKU-C", 0, 0)]
    engine.dispose()
