"""Deployed settings: database and Redis URLs built from Secrets Manager, never written in clear anywhere."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from chalicelib.settings import Settings

SECRETS = {
    "arn:db": {"username": "saga", "password": "p@ss:w/rd"},
    "arn:redis": "t0ken/with+chars",
}


@pytest.fixture(autouse=True)
def fake_secrets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def get_secret(name: str, transform: str | None = None, **_: Any) -> Any:
        asked.append(name)
        return SECRETS[name]

    monkeypatch.setattr(parameters, "get_secret", get_secret)
    return asked


def test_database_url_is_built_from_the_proxy_host_and_the_secret() -> None:
    settings = Settings(DATABASE_HOST="proxy.local", DATABASE_SECRET_ARN="arn:db", DATABASE_NAME="shop")

    assert settings.effective_database_url == "postgresql+pg8000://saga:p%40ss%3Aw%2Frd@proxy.local:5432/shop"


def test_redis_url_uses_tls_and_the_auth_token_from_the_secret() -> None:
    settings = Settings(REDIS_HOST="cache.local", REDIS_AUTH_SECRET_ARN="arn:redis")

    assert settings.effective_redis_url == "rediss://:t0ken%2Fwith%2Bchars@cache.local:6379/0"


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
