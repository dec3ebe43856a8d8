"""Powertools idempotency on Redis: a second delivery of the same (saga, step) returns the first result.

Powertools' idempotency package imports its DynamoDB layer in `__init__`, and with it boto3 and botocore: about
220 ms of a step's cold start here (docs/performance.md), for a layer the steps never use. `_without_dynamodb`
imports the package with that one module held back; the DynamoDB layer still loads, from the real module, the first
time anything asks the package for it.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from chalicelib.adapters.saga_cache import get_redis
from chalicelib.observability.telemetry import traced

POWERTOOLS_IDEMPOTENCY = "aws_lambda_powertools.utilities.idempotency"
DYNAMODB_LAYER = f"{POWERTOOLS_IDEMPOTENCY}.persistence.dynamodb"


def _without_dynamodb() -> None:
    if POWERTOOLS_IDEMPOTENCY in sys.modules:
        return
    held_back = types.ModuleType(DYNAMODB_LAYER)
    vars(held_back)["DynamoDBPersistenceLayer"] = None
    sys.modules[DYNAMODB_LAYER] = held_back
    try:
        package = importlib.import_module(POWERTOOLS_IDEMPOTENCY)
    finally:
        del sys.modules[DYNAMODB_LAYER]
    vars(package).pop("DynamoDBPersistenceLayer")

    def real_dynamodb_layer(name: str) -> Any:
        if name != "DynamoDBPersistenceLayer":
            raise AttributeError(f"module {POWERTOOLS_IDEMPOTENCY!r} has no attribute {name!r}")
        layer = importlib.import_module(DYNAMODB_LAYER).DynamoDBPersistenceLayer
        vars(package)["DynamoDBPersistenceLayer"] = layer
        return layer

    vars(package)["__getattr__"] = real_dynamodb_layer


_without_dynamodb()

# The package is in sys.modules now, without its DynamoDB layer: these imports find it there.
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function  # noqa: E402
from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: E402
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.cache import (  # noqa: E402
    CacheClientProtocol,
    CachePersistenceLayer,
)

__all__ = [
    "IdempotencyAlreadyInProgressError",
    "IdempotencyConfig",
    "IdempotencyPersistenceLayerError",
    "idempotency_config",
    "idempotent_function",
    "persistence_layer",
    "reset_idempotency",
]

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
        event_key_jmespath="[saga_id, execution, retry_count]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=RECORD_TTL_SECONDS,
    )


def reset_idempotency() -> None:
    persistence_layer.cache_clear()
    idempotency_config.cache_clear()
