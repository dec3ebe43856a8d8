"""Powertools idempotency on Redis: a second delivery of the same (saga, step) returns the first result."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CacheClientProtocol, CachePersistenceLayer

from chalicelib.adapters.saga_cache import get_redis
from chalicelib.observability.telemetry import traced

RECORD_TTL_SECONDS = 3600


RECORD_OPERATIONS = ("get", "put", "update", "delete")


def _traced(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with traced("redis", namespace="remote", operation=f"idempotency {operation}"):
            return method(*args, **kwargs)

    return call


@cache
def persistence_layer(step: str) -> CachePersistenceLayer | None:
    """One layer per step (Powertools keeps the step's key prefix on the layer, so steps must not share one);
    None when no Redis is configured."""
    client = get_redis()
    if client is None:
        return None
    with warnings.catch_warnings():
        # CachePersistenceLayer is the successor Powertools names, but in 3.x it is a TypeAlias of the
        # deprecated RedisCachePersistenceLayer, so constructing it warns too; there is nothing newer to move to.
        warnings.simplefilter("ignore", DeprecationWarning)
        layer = CachePersistenceLayer(client=cast(CacheClientProtocol, client))
    # Each record operation a `redis` subsegment when tracing is on (aws-xray-sdk cannot patch redis-py). The
    # methods are wrapped on the instance: subclassing the deprecated class would warn at every import.
    for operation in RECORD_OPERATIONS:
        method = f"_{operation}_record"
        setattr(layer, method, _traced(operation, getattr(layer, method)))
    return layer


@cache
def idempotency_config(step: str) -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="[saga_id, retry_count]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=RECORD_TTL_SECONDS,
    )


def reset_idempotency() -> None:
    persistence_layer.cache_clear()
    idempotency_config.cache_clear()
