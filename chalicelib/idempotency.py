"""Powertools idempotency on Redis: a second delivery of the same (saga, step) returns the first result."""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any, cast

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CacheClientProtocol, CachePersistenceLayer

from chalicelib.cache import get_redis
from chalicelib.observability import traced

RECORD_TTL_SECONDS = 3600


class TracedCachePersistenceLayer(CachePersistenceLayer):
    """Powertools' Redis layer, each of its record operations a `redis` subsegment when tracing is on."""

    def _get_record(self, idempotency_key: Any) -> Any:
        with traced("redis", namespace="remote", operation="idempotency get"):
            return super()._get_record(idempotency_key)

    def _put_record(self, data_record: Any) -> None:
        with traced("redis", namespace="remote", operation="idempotency put"):
            super()._put_record(data_record)

    def _update_record(self, data_record: Any) -> None:
        with traced("redis", namespace="remote", operation="idempotency update"):
            super()._update_record(data_record)

    def _delete_record(self, data_record: Any) -> None:
        with traced("redis", namespace="remote", operation="idempotency delete"):
            super()._delete_record(data_record)


@cache
def persistence_layer(step: str) -> CachePersistenceLayer:
    """One layer per step: Powertools keeps the step's key prefix on the layer, so steps must not share one."""
    with warnings.catch_warnings():
        # Powertools 3.x names CachePersistenceLayer as the successor but still warns on the shared class.
        warnings.simplefilter("ignore", DeprecationWarning)
        return TracedCachePersistenceLayer(client=cast(CacheClientProtocol, get_redis()))


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
