"""Deployed settings: database and Redis URLs built from Secrets Manager, never written in clear anywhere."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from pydantic import ValidationError

from chalicelib.settings import Settings, UnsupportedDatabaseUrl, database_engine

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

    assert settings.effective_redis_url == "rediss://:t0ken%2Fwith%2Bchars@cache.local:6379/0"


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
