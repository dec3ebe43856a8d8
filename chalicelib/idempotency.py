"""Powertools idempotency on Redis: a second delivery of the same (saga, step) returns the first result."""

from __future__ import annotations

import warnings
from functools import cache
from typing import cast

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CacheClientProtocol, CachePersistenceLayer

from chalicelib.cache import get_redis

RECORD_TTL_SECONDS = 3600


@cache
def persistence_layer(step: str) -> CachePersistenceLayer:
    """One layer per step: Powertools keeps the step's key prefix on the layer, so steps must not share one."""
    with warnings.catch_warnings():
        # Powertools 3.x names CachePersistenceLayer as the successor but still warns on the shared class.
        warnings.simplefilter("ignore", DeprecationWarning)
        return CachePersistenceLayer(client=cast(CacheClientProtocol, get_redis()))


@cache
def idempotency_config(step: str) -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="saga_id",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=RECORD_TTL_SECONDS,
    )


def reset_idempotency() -> None:
    persistence_layer.cache_clear()
    idempotency_config.cache_clear()
