"""Secrets rotate while a warm function lives on (docs/design.md §5): after an authentication failure, the secret is
read again past every cache and the connection or request made once more, without a restart.

The secrets are in moto's Secrets Manager, read as deployed functions read them without the extension's layer."""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from moto import mock_aws
from sqlalchemy import create_engine, text

from chalicelib.adapters import database, payment_provider, saga_cache
from chalicelib.settings import get_settings, reset_secrets
from infra.engine.redis_server import PrivateRedis
from payment_provider.api import ProviderApi
from payment_provider.chaos import Chaos
from payment_provider.config import STRIPE_KEY_TTL_SECONDS
from payment_provider.http_server import ProviderHTTPServer
from payment_provider.idempotency import IdempotencyKeys
from payment_provider.ledger import Ledger
from payment_provider.store import open_ledger_database
from tests.conftest import ADMIN_MYSQL_URL


class Secrets:
    def __init__(self) -> None:
        self.client = boto3.client("secretsmanager", region_name="us-east-1")

    def create(self, value: str) -> str:
        return str(self.client.create_secret(Name=f"rotation-{uuid.uuid4().hex}", SecretString=value)["ARN"])

    def rotate(self, arn: str, value: str) -> None:
        self.client.put_secret_value(SecretId=arn, SecretString=value)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Secrets]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)  # no Parameters and Secrets extension here
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = get_settings()
    for name in ("database_url", "redis_url", "payment_provider_url", "payment_provider_api_key_secret_arn"):
        monkeypatch.setattr(settings, name, getattr(settings, name))
    DEFAULT_PROVIDERS.pop("secrets", None)  # Powertools' client, made outside the mock
    reset_secrets()
    with mock_aws():
        yield Secrets()
    DEFAULT_PROVIDERS.pop("secrets", None)
    reset_secrets()
    payment_provider.reset_client()
    saga_cache.reset_redis()
    database.reset_engine()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ProviderHTTPServer]:
    """The payment provider, in this process so that the test can roll its key as an operator would."""
    ledger = open_ledger_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    chaos = Chaos(0, 0, 0, 1)
    api = ProviderApi(ledger, Ledger(300), IdempotencyKeys(ledger, STRIPE_KEY_TTL_SECONDS), chaos, 25.0)
    server = ProviderHTTPServer(("127.0.0.1", 0), api, "sk_test_first", chaos, 1)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    yield server
    server.stop()
    serving.join(timeout=30)
    server.server_close()
    ledger.dispose()


def test_a_rotated_provider_key_is_read_again_after_a_401(secrets: Secrets, provider: ProviderHTTPServer) -> None:
    settings = get_settings()
    settings.payment_provider_url = f"http://127.0.0.1:{provider.server_port}"
    settings.payment_provider_api_key_secret_arn = secrets.create("sk_test_first")
    payment_provider.reset_client()
    first = payment_provider.provider_client().charge("s" * 32, "tok_visa", 2_500, "usd", "key-1")

    provider.api_key = b"sk_test_second"  # rolled at the provider; the function keeps its client and its key
    secrets.rotate(settings.payment_provider_api_key_secret_arn, "sk_test_second")
    second = payment_provider.provider_client().charge("t" * 32, "tok_visa", 1_000, "usd", "key-2")

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert [charge.id for charge in payment_provider.provider_client().list_charges()] == [first.id, second.id]


def test_a_key_the_provider_refuses_and_the_secret_still_holds_is_refused(
    secrets: Secrets, provider: ProviderHTTPServer
) -> None:
    settings = get_settings()
    settings.payment_provider_url = f"http://127.0.0.1:{provider.server_port}"
    settings.payment_provider_api_key_secret_arn = secrets.create("sk_test_first")
    payment_provider.reset_client()
    provider.api_key = b"sk_test_second"

    with pytest.raises(payment_provider.ProviderAuthFailed):
        payment_provider.provider_client().list_charges()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with tempfile.TemporaryDirectory(prefix="saga-redis-") as directory:
        server = PrivateRedis(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_a_changed_redis_password_is_read_again_after_an_authentication_failure(
    secrets: Secrets, private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = redis.Redis(host="127.0.0.1", port=private_redis.port)
    admin.config_set("requirepass", "first-token")
    admin = redis.Redis(host="127.0.0.1", port=private_redis.port, password="first-token")
    settings = get_settings()
    settings.redis_url = None
    for name, value in {"redis_host": "127.0.0.1", "redis_port": private_redis.port, "redis_tls": False}.items():
        monkeypatch.setattr(settings, name, value)
    monkeypatch.setattr(settings, "redis_auth_secret_arn", secrets.create("first-token"))
    saga_cache.reset_redis()
    saga_cache.cache_status("a" * 32, "RUNNING", 1)

    admin.config_set("requirepass", "second-token")
    admin = redis.Redis(host="127.0.0.1", port=private_redis.port, password="second-token")
    admin.client_kill_filter(_type="normal", skipme=True)  # the old token's sessions end, as a rotation ends them
    secrets.rotate(str(settings.redis_auth_secret_arn), "second-token")
    saga_cache.cache_status("b" * 32, "COMPLETED", 3)

    assert admin.get("saga:" + "a" * 32 + ":status") == b'{"status": "RUNNING", "version": 1}'
    assert admin.get("saga:" + "b" * 32 + ":status") == b'{"status": "COMPLETED", "version": 3}'
    assert saga_cache.cached_status("b" * 32) == {"status": "COMPLETED", "version": 3}


@pytest.fixture
def mysql_user() -> Iterator[tuple[str, Any]]:
    """A MySQL user of its own, whose password the test changes, on a database of its own."""
    name = f"rot{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_MYSQL_URL, isolation_level="AUTOCOMMIT", hide_parameters=True)
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
        connection.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'first-password'"))
        connection.execute(text(f"GRANT ALL ON {name}.* TO '{name}'@'%'"))
    yield name, admin
    with admin.connect() as connection:
        connection.execute(text(f"DROP USER '{name}'@'%'"))
        connection.execute(text(f"DROP DATABASE {name}"))
    admin.dispose()


def test_a_rotated_database_password_is_read_again_when_a_new_connection_is_refused(
    secrets: Secrets, mysql_user: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, admin = mysql_user
    settings = get_settings()
    settings.database_url = None
    secret = secrets.create(f'{{"username": "{name}", "password": "first-password"}}')
    server = ADMIN_MYSQL_URL.split("@")[-1].split("/")[0]
    host, _, port = server.partition(":")
    for field, value in {
        "database_host": host,
        "database_port": int(port or 3306),
        "database_engine": "mysql",
        "database_name": name,
        "database_secret_arn": secret,
        "database_tls": False,
    }.items():
        monkeypatch.setattr(settings, field, value)
    database.reset_engine()
    with database.UnitOfWork() as uow:
        assert uow.session.execute(text("SELECT CURRENT_USER()")).scalar_one().startswith(name)

    with admin.connect() as connection:
        connection.execute(text(f"ALTER USER '{name}'@'%' IDENTIFIED BY 'second-password'"))
    secrets.rotate(secret, f'{{"username": "{name}", "password": "second-password"}}')
    database.get_engine().dispose()  # the connections opened before go; the next one is opened anew

    with database.UnitOfWork() as uow:
        assert uow.session.execute(text("SELECT CURRENT_USER()")).scalar_one().startswith(name)
