"""Settings, read from the environment in one place (docs/design.md §5)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_CACHE_SECONDS = 300
LOCAL_DATA_DIR = Path(__file__).resolve().parent.parent / ".local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    allow_faults: bool = Field(default=False, alias="SAGA_ALLOW_FAULTS")
    purchase_state_machine_arn: str | None = Field(default=None, alias="PURCHASE_STATE_MACHINE_ARN")
    return_state_machine_arn: str | None = Field(default=None, alias="RETURN_STATE_MACHINE_ARN")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    # Deployed: the database through RDS Proxy and Redis on ElastiCache, credentials from Secrets Manager.
    database_host: str | None = Field(default=None, alias="DATABASE_HOST")
    database_port: int = Field(default=5432, alias="DATABASE_PORT")
    database_name: str = Field(default="saga", alias="DATABASE_NAME")
    database_secret_arn: str | None = Field(default=None, alias="DATABASE_SECRET_ARN")
    database_tls: bool = Field(default=False, alias="DATABASE_TLS")
    redis_host: str | None = Field(default=None, alias="REDIS_HOST")
    redis_port: int = Field(default=6379, alias="REDIS_PORT")
    redis_auth_secret_arn: str | None = Field(default=None, alias="REDIS_AUTH_SECRET_ARN")
    redis_tls: bool = Field(default=True, alias="REDIS_TLS")
    redis_database: int = Field(default=0, ge=0, alias="REDIS_DB")
    status_ttl_seconds: int = Field(default=86_400, alias="SAGA_STATUS_TTL_SECONDS")
    return_window_days: int = Field(default=30, alias="SAGA_RETURN_WINDOW_DAYS")
    local_lambda_timeout: float | None = Field(default=None, gt=0, alias="LOCAL_LAMBDA_TIMEOUT")
    """Locally: every function's timeout in seconds, instead of the template's (tests and demos)."""
    payment_provider_url: str | None = Field(default=None, alias="PAYMENT_PROVIDER_URL")
    """Unset locally: the local tools start the provider on 127.0.0.1 and set it."""
    payment_provider_api_key: str = Field(default="sk_test_local", alias="PAYMENT_PROVIDER_API_KEY")
    payment_provider_api_key_secret_arn: str | None = Field(default=None, alias="PAYMENT_PROVIDER_API_KEY_SECRET_ARN")
    """Deployed: the API key comes from this secret (its plain-text value) instead."""
    payment_provider_timeout_seconds: float = Field(default=5.0, gt=0, alias="PAYMENT_PROVIDER_TIMEOUT_SECONDS")
    reconciler_grace_seconds: float = Field(default=120, ge=0, alias="RECONCILER_GRACE_SECONDS")
    """How long a RUNNING or COMPENSATING saga must have been quiet before the reconciler looks at it: longer than
    the API function takes to start an execution (its timeout is 30 s)."""

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL; else DATABASE_HOST with the credentials of DATABASE_SECRET_ARN; else the SQLite file."""
        if self.database_url:
            return self.database_url
        if self.database_host and self.database_secret_arn:
            credentials = _secret_json(self.database_secret_arn)
            user, password = (quote(str(credentials[key]), safe="") for key in ("username", "password"))
            return (
                f"postgresql+pg8000://{user}:{password}@{self.database_host}:{self.database_port}/{self.database_name}"
            )
        LOCAL_DATA_DIR.mkdir(exist_ok=True)
        return f"sqlite:///{LOCAL_DATA_DIR / 'saga.db'}"

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL; else REDIS_HOST (over TLS unless REDIS_TLS=false) with the AUTH token of REDIS_AUTH_SECRET_ARN,
        database REDIS_DB; else None (no cache)."""
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            token = _secret_text(self.redis_auth_secret_arn) if self.redis_auth_secret_arn else ""
            auth = f":{quote(token, safe='')}@" if token else ""
            scheme = "rediss" if self.redis_tls else "redis"
            return f"{scheme}://{auth}{self.redis_host}:{self.redis_port}/{self.redis_database}"
        return None

    @property
    def effective_payment_provider_api_key(self) -> str:
        """The provider's API key: from PAYMENT_PROVIDER_API_KEY_SECRET_ARN when deployed, else the variable."""
        if self.payment_provider_api_key_secret_arn:
            return _secret_text(self.payment_provider_api_key_secret_arn)
        return self.payment_provider_api_key


def _secret_json(arn: str) -> dict[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    return dict(parameters.get_secret(arn, transform="json", max_age=SECRET_CACHE_SECONDS))


def _secret_text(arn: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(arn, max_age=SECRET_CACHE_SECONDS))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
