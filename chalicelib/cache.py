"""Redis: the saga status read cache. With no REDIS_URL an in-process stand-in (fakeredis) serves."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import redis

from chalicelib.config import get_settings

logger = logging.getLogger(__name__)

STATUS_KEY = "saga:{saga_id}:status"


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    url = get_settings().redis_url
    if url:
        # Short timeouts and no retries: an outage must fail fast, not stall a step for a minute.
        return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=None)
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def reset_redis() -> None:
    get_redis.cache_clear()


def cache_status(saga_id: str, status: str, version: int) -> None:
    """Write the saga's current status through to Redis (steps of one saga run one after another)."""
    value = json.dumps({"status": status, "version": version})
    get_redis().set(STATUS_KEY.format(saga_id=saga_id), value, ex=get_settings().status_ttl_seconds)


def cached_status(saga_id: str) -> dict[str, Any] | None:
    """The cached status, or None when it is not cached or Redis cannot be reached."""
    try:
        raw = get_redis().get(STATUS_KEY.format(saga_id=saga_id))
    except redis.RedisError:
        logger.warning("status cache unreachable; saga %s is read from the database", saga_id, exc_info=True)
        return None
    return json.loads(raw) if raw else None


def write_through(saga_id: str, status: str, version: int) -> None:
    """Cache the status, tolerating an unreachable Redis: the database holds the truth and readers fall back."""
    try:
        cache_status(saga_id, status, version)
    except redis.RedisError:
        logger.warning("could not cache the status of saga %s", saga_id, exc_info=True)
