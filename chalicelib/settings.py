"""Settings, read from the environment in one place (docs/design.md §5)."""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_CACHE_SECONDS = 300
SECRETS_EXTENSION_PORT = 2773
SECRETS_EXTENSION_TOKEN = "X-Aws-Parameters-Secrets-Token"  # noqa: S105  # nosec B105 - a header's name
SECRETS_EXTENSION_TIMEOUT_SECONDS = 5.0
DATABASE_DRIVERS = {"postgresql": "postgresql+pg8000", "mysql": "mysql+pymysql", "sqlite": "sqlite"}
"""The engines the code runs on, each with the one driver the requirements carry (pure Python, as Lambda wants)."""
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
LOCAL_DATA_DIR = Path(__file__).resolve().parent.parent / ".local"


class UnsupportedDatabaseUrl(ValueError):
    """A DATABASE_URL whose scheme names an engine or a driver this code does not carry."""


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
    database_engine: Literal["postgresql", "mysql"] = Field(default="postgresql", alias="DATABASE_ENGINE")
    """Deployed: the engine behind DATABASE_HOST (the stack's DatabaseEngine parameter)."""
    database_port: int | None = Field(default=None, alias="DATABASE_PORT")
    """Deployed: the proxy's port; unset, the engine's usual one."""
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
    local_time_scale: float | None = Field(default=None, ge=0, alias="LOCAL_TIME_SCALE")
    """Locally: the factor the engine applies to the state machines' Retry intervals and Wait states."""
    payment_provider_url: str | None = Field(default=None, alias="PAYMENT_PROVIDER_URL")
    """Unset locally: the local tools start the provider on 127.0.0.1 and set it."""
    payment_provider_api_key: str = Field(default="sk_test_local", alias="PAYMENT_PROVIDER_API_KEY")
    payment_provider_api_key_secret_arn: str | None = Field(default=None, alias="PAYMENT_PROVIDER_API_KEY_SECRET_ARN")
    """Deployed: the API key comes from this secret (its plain-text value) instead."""
    payment_provider_timeout_seconds: float = Field(default=5.0, gt=0, alias="PAYMENT_PROVIDER_TIMEOUT_SECONDS")
    payment_provider_key_ttl_seconds: float = Field(default=86_400, gt=0, alias="PAYMENT_PROVIDER_KEY_TTL_SECONDS")
    """How long the provider remembers an idempotency key (Stripe: 24 h). Within it, asking again with a step's key
    tells what the first request did; past it, the same key would be a new request."""
    reconciler_grace_seconds: float = Field(default=120, ge=0, alias="RECONCILER_GRACE_SECONDS")
    """How long a RUNNING or COMPENSATING saga must have been quiet before the reconciler looks at it: longer than
    the API function takes to start an execution (its timeout is 30 s)."""
    reconciler_start_rate: float = Field(default=50, gt=0, alias="RECONCILER_START_RATE")
    """StartExecution calls a reconciler pass makes a second at most. Step Functions refills an account's bucket at
    150 a second (300 in us-east-1, us-west-2, eu-west-1), shared with the API's starts of new sagas."""
    reconciler_describe_rate: float = Field(default=8, gt=0, alias="RECONCILER_DESCRIBE_RATE")
    """DescribeExecution calls a reconciler pass makes a second at most: Step Functions refills that bucket at
    10 a second (15 in us-east-1, us-west-2, eu-west-1), and a retry of a stuck saga asks too."""

    bulk_retry_start_rate: float = Field(default=25, gt=0, alias="BULK_RETRY_START_RATE")
    """StartExecution calls a second a bulk retry's worker makes at most: with the reconciler's 50, half the smallest
    refill (150 a second), leaving the other half to the API's starts of new sagas."""

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL; else DATABASE_HOST with the credentials of DATABASE_SECRET_ARN; else the SQLite file."""
        if self.database_url:
            return self.database_url
        if self.database_host and self.database_secret_arn:
            user, password = (quote(value, safe="") for value in self.database_credentials)
            driver = DATABASE_DRIVERS[self.database_engine]
            port = self.database_port or DEFAULT_PORTS[self.database_engine]
            return f"{driver}://{user}:{password}@{self.database_host}:{port}/{self.database_name}"
        LOCAL_DATA_DIR.mkdir(exist_ok=True)
        return f"sqlite:///{LOCAL_DATA_DIR / 'saga.db'}"

    @property
    def database_credentials(self) -> tuple[str, str]:
        """Deployed: (username, password) from DATABASE_SECRET_ARN."""
        credentials = _secret_json(str(self.database_secret_arn))
        return str(credentials["username"]), str(credentials["password"])

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL; else REDIS_HOST (over TLS unless REDIS_TLS=false), database REDIS_DB, whose AUTH token is
        `redis_auth_token`; else None (no cache)."""
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            scheme = "rediss" if self.redis_tls else "redis"
            return f"{scheme}://{self.redis_host}:{self.redis_port}/{self.redis_database}"
        return None

    @property
    def redis_auth_token(self) -> str | None:
        """Deployed: the AUTH token of REDIS_HOST, from REDIS_AUTH_SECRET_ARN (read at each new connection)."""
        if self.redis_url or not self.redis_host or not self.redis_auth_secret_arn:
            return None
        return _secret_text(self.redis_auth_secret_arn)

    @property
    def effective_payment_provider_api_key(self) -> str:
        """The provider's API key: from PAYMENT_PROVIDER_API_KEY_SECRET_ARN when deployed, else the variable."""
        if self.payment_provider_api_key_secret_arn:
            return _secret_text(self.payment_provider_api_key_secret_arn)
        return self.payment_provider_api_key


def database_engine(url: str) -> str:
    """`postgresql`, `mysql` or `sqlite`: the engine a database URL names, if this code carries its driver."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    for engine, driver in DATABASE_DRIVERS.items():
        if scheme == driver:
            return engine
    supported = "postgresql+pg8000://…, mysql+pymysql://…, sqlite:///<file>"
    shown = scheme or "(none)"
    raise UnsupportedDatabaseUrl(f"DATABASE_URL scheme {shown!r} is not supported; use one of: {supported}")


_secrets: dict[str, str] = {}
"""The secrets this process read, kept until an authentication failure shows one stale (`reread_secret`): a secret
rotates (RDS every 7 days) while a warm function lives on, and a cache that only expired would fail every new
connection until then."""
_stale: set[str] = set()


def reread_secret(arn: str | None) -> None:
    """An authentication failure with this secret's value: the next read asks Secrets Manager itself, past every
    cache (the extension's too)."""
    if arn:
        _stale.add(arn)
        _secrets.pop(arn, None)


def _secret_json(arn: str) -> dict[str, Any]:
    return dict(json.loads(_secret_text(arn)))


def _secret_text(arn: str) -> str:
    if arn in _secrets:
        return _secrets[arn]
    fresh = arn in _stale
    text = None if fresh else _from_secrets_extension(arn)
    if text is None:
        from aws_lambda_powertools.utilities import parameters

        text = str(parameters.get_secret(arn, max_age=SECRET_CACHE_SECONDS, force_fetch=fresh))
    _stale.discard(arn)
    _secrets[arn] = text
    return text


def _from_secrets_extension(arn: str) -> str | None:
    """The secret's string from the AWS Parameters and Secrets Lambda Extension, when the function has it: that keeps
    boto3 off the step path (about 200 ms of a cold start, docs/performance.md). None when there is no extension to
    ask: then Powertools parameters (boto3) reads it, as in tests, on LocalStack or in a stack deployed without the
    extension's layer.

    The extension caches for SECRETS_MANAGER_TTL (300 s by default). It authenticates callers by the execution
    environment's session token, so without one there is none to ask: not in Lambda, and not in a function restored
    from a SnapStart snapshot, whose credentials come from the container credentials endpoint (boto3 reads them).
    It answers during invocations only, never during init: secrets are read at first use."""
    token = os.environ.get("AWS_SESSION_TOKEN")
    if not token:
        return None
    import http.client

    port = int(os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", SECRETS_EXTENSION_PORT))
    connection = http.client.HTTPConnection("localhost", port, timeout=SECRETS_EXTENSION_TIMEOUT_SECONDS)
    try:
        connection.request(
            "GET", f"/secretsmanager/get?secretId={quote(arn, safe='')}", headers={SECRETS_EXTENSION_TOKEN: token}
        )
        response = connection.getresponse()
        status, body = response.status, response.read()
    except ConnectionRefusedError:
        return None
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"the Parameters and Secrets extension answered HTTP {status} for a secret")
    return str(json.loads(body)["SecretString"])


def reset_secrets() -> None:
    """Forget what this process and Powertools cached of the secrets, so that the next read asks again."""
    _secrets.clear()
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()  # type: ignore[no-untyped-call]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
