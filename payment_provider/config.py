"""The provider's settings: read once from the environment; command-line flags override them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

API_KEY = "PAYMENT_PROVIDER_API_KEY"
DATABASE_URL = "PROVIDER_DATABASE_URL"
HOST = "PROVIDER_HOST"
PORT = "PROVIDER_PORT"
REFUND_SETTLE_SECONDS = "REFUND_SETTLE_SECONDS"
LOST_RESPONSE_HOLD_SECONDS = "PROVIDER_LOST_RESPONSE_HOLD_SECONDS"
FAULT_RATE = "PROVIDER_FAULT_RATE"
LOST_RATE = "PROVIDER_LOST_RATE"
LATENCY_MS = "PROVIDER_LATENCY_MS"
LISTING_LAG_SECONDS = "PROVIDER_LISTING_LAG_SECONDS"
SLOW_CAPTURE_RATE = "PROVIDER_SLOW_CAPTURE_RATE"
SLOW_CAPTURE_SECONDS = "PROVIDER_SLOW_CAPTURE_SECONDS"
KEY_TTL_SECONDS = "PROVIDER_KEY_TTL_SECONDS"
SEED = "PROVIDER_SEED"
LOG_LEVEL = "PROVIDER_LOG_LEVEL"
PARENT_PID = "PROVIDER_PARENT_PID"
"""Set by the launcher: the child exits when this process dies (see `parent_death`)."""

DEFAULT_PORT = 8010
DEFAULT_API_KEY = "sk_test_local"
STRIPE_KEY_TTL_SECONDS = 24 * 3600
"""Stripe prunes an idempotency key after 24 hours; the same key after that is a new request."""

_Value = TypeVar("_Value", int, float)


class SettingsError(ValueError):
    """A setting has a value the provider cannot run with; the message names the variable."""


@dataclass(frozen=True)
class ProviderSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str = DEFAULT_API_KEY
    database_url: str | None = None
    """None: the SQLite file `.local/payment_provider.db` in the repository."""
    refund_settle_seconds: float = 300.0
    lost_response_hold_seconds: float = 30.0
    fault_rate: float = 0.0
    lost_rate: float = 0.0
    latency_ms: float = 0.0
    listing_lag_seconds: float = 0.0
    """A charge shows in `GET /v1/charges?saga_id=` (a search, as Stripe's metadata search) only this long after it
    committed; reads by id and unfiltered listings are consistent."""
    slow_capture_rate: float = 0.0
    """Share of charges held `slow_capture_seconds` before they commit (every `tok_slow_capture` charge is)."""
    slow_capture_seconds: float = 25.0
    key_ttl_seconds: float = STRIPE_KEY_TTL_SECONDS
    """How long an idempotency key is remembered; after that the same key is a new request."""
    seed: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProviderSettings:
        """Settings from environment variables; unset or empty ones keep their defaults."""
        defaults = cls()
        seed = environ.get(SEED, "").strip()
        return cls(
            host=environ.get(HOST, "").strip() or defaults.host,
            port=_number(environ, PORT, int, defaults.port, low=0, high=65535),
            api_key=environ.get(API_KEY, "") or defaults.api_key,
            database_url=environ.get(DATABASE_URL, "").strip() or None,
            refund_settle_seconds=_number(environ, REFUND_SETTLE_SECONDS, float, defaults.refund_settle_seconds),
            lost_response_hold_seconds=_number(
                environ, LOST_RESPONSE_HOLD_SECONDS, float, defaults.lost_response_hold_seconds
            ),
            fault_rate=_number(environ, FAULT_RATE, float, 0.0, high=1.0),
            lost_rate=_number(environ, LOST_RATE, float, 0.0, high=1.0),
            latency_ms=_number(environ, LATENCY_MS, float, 0.0),
            listing_lag_seconds=_number(environ, LISTING_LAG_SECONDS, float, 0.0),
            slow_capture_rate=_number(environ, SLOW_CAPTURE_RATE, float, 0.0, high=1.0),
            slow_capture_seconds=_number(environ, SLOW_CAPTURE_SECONDS, float, defaults.slow_capture_seconds),
            key_ttl_seconds=_number(environ, KEY_TTL_SECONDS, float, defaults.key_ttl_seconds, low=1.0),
            seed=_parse(SEED, seed, int) if seed else None,
            log_level=(environ.get(LOG_LEVEL, "").strip() or defaults.log_level).upper(),
        )


def check_rate(name: str, value: float) -> float:
    """`value` if it is a fraction in [0, 1]."""
    return _in_range(name, value, 0.0, 1.0)


def _number(
    environ: Mapping[str, str],
    name: str,
    kind: Callable[[str], _Value],
    default: _Value,
    low: float = 0.0,
    high: float | None = None,
) -> _Value:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    return _in_range(name, _parse(name, raw, kind), low, high)


def _parse(name: str, raw: str, kind: Callable[[str], _Value]) -> _Value:
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def _in_range(name: str, value: _Value, low: float, high: float | None) -> _Value:
    if not low <= value or (high is not None and value > high):  # also refuses NaN
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise SettingsError(f"{name}={value!r} must be {bounds}")
    return value
