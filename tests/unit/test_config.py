"""Deployed settings: database and Redis URLs built from Secrets Manager, never written in clear anywhere."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities import parameters
from pydantic import ValidationError

from chalicelib.settings import Settings, UnsupportedDatabaseUrl, database_engine, reset_secrets

SECRETS = {
    "arn:db": {"username": "saga", "password": "p@ss:w/rd"},
    "arn:redis": "t0ken/with+chars",
}


@pytest.fixture(autouse=True)
def fake_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    asked: list[str] = []

    def get_secret(name: str, **_: Any) -> str:
        asked.append(name)
        value = SECRETS[name]
        return value if isinstance(value, str) else json.dumps(value)

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    reset_secrets()
    yield asked
    reset_secrets()


def test_database_url_is_built_from_the_proxy_host_and_the_secret() -> None:
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db", DATABASE_NAME="shop")

    assert settings.effective_database_url == "postgresql+pg8000://saga:p%40ss%3Aw%2Frd@proxy.local:5432/shop"


def test_on_mysql_the_database_url_names_pymysql_and_port_3306() -> None:
    settings = Settings(DATABASE_ENGINE="mysql", DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db")

    assert settings.effective_database_url == "mysql+pymysql://saga:p%40ss%3Aw%2Frd@proxy.local:3306/saga"
    assert database_engine(settings.effective_database_url) == "mysql"


def test_the_proxy_port_wins_over_the_engine_default() -> None:
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db", DATABASE_PORT="6432")

    assert settings.effective_database_url.endswith("@proxy.local:6432/saga")


def test_an_engine_other_than_postgresql_or_mysql_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(DATABASE_ENGINE="oracle")


@pytest.mark.parametrize("url", ["mysql://u@h/d", "postgresql://u@h/d", "mysql+mysqldb://u@h/d", "u:secret@h/d"])
def test_a_database_url_without_a_driver_we_carry_is_refused_with_the_list(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseUrl) as refused:
        database_engine(url)

    assert "postgresql+pg8000://…, mysql+pymysql://…, sqlite:///<file>" in str(refused.value)
    assert "secret" not in str(refused.value)


def test_redis_url_uses_tls_and_the_auth_token_from_the_secret() -> None:
    settings = Settings(REDIS_HOST="cache.local", REDIS_AUTH_SECRET_ARN="arn:redis")

    assert settings.effective_redis_url == "rediss://cache.local:6379/0"
    assert settings.redis_auth_token == "t0ken/with+chars", "given at each connection, never in the URL"


def test_redis_without_tls_or_auth_uses_plain_redis_on_the_database_named() -> None:
    settings = Settings(REDIS_HOST="127.0.0.1", REDIS_TLS="false", REDIS_DB="11")

    assert settings.effective_redis_url == "redis://127.0.0.1:6379/11"


def test_explicit_urls_win_and_no_secret_is_read(fake_secrets: list[str]) -> None:
    settings = Settings(
        DATABASE_URL="postgresql+pg8000://u@h/d",
        DATABASE_HOST="proxy",
        DATABASE_SECRET_ARN="arn:db",
        REDIS_URL="redis://h:1/0",
        REDIS_HOST="cache",
    )

    assert settings.effective_database_url == "postgresql+pg8000://u@h/d"
    assert settings.effective_redis_url == "redis://h:1/0"
    assert fake_secrets == []


def test_without_configuration_the_embedded_default_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_HOST", "REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_redis_url is None


class _FakeExtension(BaseHTTPRequestHandler):
    """The Parameters and Secrets extension's HTTP interface, as AWS documents it."""

    answers: ClassVar[dict[str, tuple[int, str]]] = {}
    asked: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        secret_id = query["secretId"][0]
        type(self).asked.append((secret_id, self.headers.get("X-Aws-Parameters-Secrets-Token")))
        status, value = self.answers.get(secret_id, (400, ""))
        body = json.dumps({"ARN": secret_id, "SecretString": value}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FakeExtension]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeExtension)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeExtension.asked = []
    _FakeExtension.answers = {"arn:db": (200, json.dumps(SECRETS["arn:db"])), "arn:redis": (200, "t0ken/with+chars")}
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(server.server_address[1]))
    yield _FakeExtension
    server.shutdown()
    server.server_close()


def test_with_the_secrets_extension_secrets_come_from_it_with_the_session_token_and_boto3_is_not_asked(
    extension: type[_FakeExtension], fake_secrets: list[str]
) -> None:
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db", REDIS_HOST="cache.local")
    settings.redis_auth_secret_arn = "arn:redis"

    assert settings.effective_database_url == "postgresql+pg8000://saga:p%40ss%3Aw%2Frd@proxy.local:5432/saga"
    assert settings.effective_redis_url == "rediss://cache.local:6379/0"
    assert settings.redis_auth_token == "t0ken/with+chars", "given at each connection, never in the URL"
    assert extension.asked == [("arn:db", "session-token"), ("arn:redis", "session-token")]
    assert fake_secrets == []


def test_where_no_extension_listens_the_secrets_are_read_with_boto3(
    monkeypatch: pytest.MonkeyPatch, fake_secrets: list[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(free_port))
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db")

    assert settings.effective_database_url == "postgresql+pg8000://saga:p%40ss%3Aw%2Frd@proxy.local:5432/saga"
    assert fake_secrets == ["arn:db"]


@pytest.mark.parametrize("container_credentials", [False, True], ids=["outside-lambda", "snapstart-restored"])
def test_without_a_session_token_the_extension_is_not_asked(
    extension: type[_FakeExtension],
    monkeypatch: pytest.MonkeyPatch,
    fake_secrets: list[str],
    container_credentials: bool,
) -> None:
    """Outside Lambda; and in a function restored from a SnapStart snapshot, which gets its credentials from the
    container credentials endpoint instead of AWS_SESSION_TOKEN: boto3 reads them, the extension could not."""
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    if container_credentials:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/2018-06-01/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-token")
    settings = Settings(REDIS_HOST="cache.local", REDIS_AUTH_SECRET_ARN="arn:redis")

    assert settings.effective_redis_url == "rediss://cache.local:6379/0"
    assert settings.redis_auth_token == "t0ken/with+chars", "given at each connection, never in the URL"
    assert extension.asked == [] and fake_secrets == ["arn:redis"]


def test_an_extension_that_refuses_a_secret_fails_the_read_without_falling_back(
    extension: type[_FakeExtension], fake_secrets: list[str]
) -> None:
    extension.answers["arn:db"] = (403, "")
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db")

    with pytest.raises(RuntimeError, match="HTTP 403"):
        _ = settings.effective_database_url
    assert fake_secrets == []
