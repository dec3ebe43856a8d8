"""Redis: the saga read cache. With no Redis configured nothing is cached and every read goes to the database.

Two keys per saga: its status with the saga's version, written through on every change; and its full view,
stored under that version. A view is served only when its version is the current one, so it is never stale.
Each write that moves the status to a newer version also publishes it on the saga's channel, in the same
transaction, for a request that waits for the saga's outcome (`Prefer: wait`, docs/design.md §3.1).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from chalicelib.observability.telemetry import logger, traced
from chalicelib.settings import get_settings, reread_secret

T = TypeVar("T")

STATUS_KEY = "saga:{saga_id}:status"
VIEW_KEY = "saga:{saga_id}:view:{version}"
STATUS_CHANNEL = "saga:{saga_id}:moved"
SUBSCRIBE_TIMEOUT_SECONDS = 1.0
"""As the client's socket timeout: an outage must fail fast."""


class SecretAuthToken(CredentialProvider):
    """The AUTH token of REDIS_AUTH_SECRET_ARN, asked for at each new connection."""

    def get_credentials(self) -> tuple[str]:
        return (get_settings().redis_auth_token or "",)


class RetryOnceWithANewToken(Retry):
    """No retry (an outage must fail fast, not stall a step for a minute), but after an authentication failure: the
    token may have rotated, so it is read again from its secret, and the operation tried once more."""

    def __init__(self) -> None:
        super().__init__(NoBackoff(), retries=0)

    def call_with_retry(
        self, do: Callable[[], T], fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> T:
        try:
            return super().call_with_retry(do, fail, is_retryable, with_failure_count)
        except AuthenticationError:
            logger.warning("Redis refused the AUTH token; reading it again from its secret")
            reread_secret(get_settings().redis_auth_secret_arn)
            return super().call_with_retry(do, fail, is_retryable, with_failure_count)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis | None:
    """The client of the configured Redis; None when none is configured (then nothing is cached)."""
    settings = get_settings()
    url = settings.effective_redis_url
    if not url:
        return None
    # Short timeouts and no retries: an outage must fail fast, not stall a step for a minute.
    if settings.redis_auth_token is None:
        return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=None)
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=RetryOnceWithANewToken(),
        credential_provider=SecretAuthToken(),
    )


def reset_redis() -> None:
    """Close the client's connections and forget it (after the settings changed, or around a SnapStart snapshot)."""
    if get_redis.cache_info().currsize and (client := get_redis()) is not None:
        client.close()
    get_redis.cache_clear()
    _unwritten.clear()


_unwritten: dict[str, tuple[str, int]] = {}
"""Statuses this process could not write while Redis was out. On the next use of the cache their keys are
deleted, not written: a Redis that comes back with older entries (a replica, a snapshot) would serve them stale,
and writing this process's version could put back one older than a write another process lost too (a Lambda
instance that is never invoked again takes its pending writes with it). A deleted key is a cache miss, which
reads the database and caches what it finds."""
_unwritten_lock = threading.Lock()


def _forget_unwritten() -> None:
    client = get_redis()
    with _unwritten_lock:
        pending = dict(_unwritten)
    if client is None or not pending:
        return
    with traced("redis", namespace="remote", operation="forget unwritten statuses"):
        client.delete(*(STATUS_KEY.format(saga_id=saga_id) for saga_id in pending))
    with _unwritten_lock:
        for saga_id, entry in pending.items():
            if _unwritten.get(saga_id) == entry:
                del _unwritten[saga_id]


def cache_status(saga_id: str, status: str, version: int) -> None:
    """Write the saga's status to Redis unless a newer version is there: writes may arrive out of order."""
    client = get_redis()
    if client is None:
        return
    key = STATUS_KEY.format(saga_id=saga_id)
    value = json.dumps({"status": status, "version": version})
    with traced("redis", namespace="remote", operation="cache status"), client.pipeline() as pipeline:
        while True:
            try:
                pipeline.watch(key)  # type: ignore[no-untyped-call]
                current = pipeline.get(key)
                cached_version = json.loads(current)["version"] if current is not None else None
                if cached_version is not None and cached_version > version:
                    pipeline.unwatch()
                    return
                pipeline.multi()
                pipeline.set(key, value, ex=get_settings().status_ttl_seconds)
                if cached_version != version:  # a reader caching what it read moves nothing
                    pipeline.publish(STATUS_CHANNEL.format(saga_id=saga_id), value)
                pipeline.execute()
                return
            except redis.WatchError:
                continue


def cached_status(saga_id: str) -> dict[str, Any] | None:
    """The cached status, or None when it is not cached or Redis cannot be reached."""
    client = get_redis()
    if client is None:
        return None
    try:
        if _unwritten:
            _forget_unwritten()
        with traced("redis", namespace="remote", operation="read status"):
            raw = client.get(STATUS_KEY.format(saga_id=saga_id))
    except redis.RedisError:
        logger.warning("status cache unreachable; saga %s is read from the database", saga_id, exc_info=True)
        return None
    return json.loads(raw) if raw else None


def write_through(saga_id: str, status: str, version: int) -> None:
    """Cache the status, tolerating an unreachable Redis: the database holds the truth and readers fall back."""
    try:
        if _unwritten:
            _forget_unwritten()
        cache_status(saga_id, status, version)
        return
    except redis.RedisError:
        logger.warning("could not cache the status of saga %s", saga_id, exc_info=True)
    with _unwritten_lock:
        _unwritten[saga_id] = (status, version)


def cached_view(saga_id: str) -> dict[str, Any] | None:
    """The saga's view at its current version, or None (not cached, or Redis unreachable)."""
    status = cached_status(saga_id)
    client = get_redis()
    if status is None or client is None:
        return None
    try:
        with traced("redis", namespace="remote", operation="read view"):
            raw = client.get(VIEW_KEY.format(saga_id=saga_id, version=status["version"]))
    except redis.RedisError:
        logger.warning("view cache unreachable; saga %s is read from the database", saga_id, exc_info=True)
        return None
    return json.loads(raw) if raw else None


def store_view(saga_id: str, status: str, version: int, view: dict[str, Any]) -> None:
    """Cache a view read from the database, tolerating an unreachable Redis.

    The status goes through the same version check as every status write: a step that committed after this read
    has written a newer status, which stays; an older one (a Redis back from an outage with what it held
    before, while the process that could not write the newer one is elsewhere) is replaced.
    """
    client = get_redis()
    if client is None:
        return
    try:
        cache_status(saga_id, status, version)
        with traced("redis", namespace="remote", operation="store view"):
            key = VIEW_KEY.format(saga_id=saga_id, version=version)
            client.set(key, json.dumps(view), ex=get_settings().status_ttl_seconds)
    except redis.RedisError:
        logger.warning("could not cache the view of saga %s", saga_id, exc_info=True)


class StatusMoves:
    """The status moves of one saga, as its channel announces them, from the moment of subscribing."""

    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self._pubsub = pubsub

    def next_move(self, timeout: float) -> dict[str, Any] | None:
        """The next status published (`{"status", "version"}`), or None when `timeout` seconds pass first or Redis
        is lost meanwhile. It blocks on the subscription's socket: no command is sent while it waits."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                with traced("redis", namespace="remote", operation="wait for a status move"):
                    message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            except redis.RedisError:
                logger.warning("lost the status channel while waiting; answering with what is known", exc_info=True)
                return None
            if message is not None and message["type"] == "message":
                moved: dict[str, Any] = json.loads(message["data"])
                return moved
        return None


@contextmanager
def status_moves(saga_id: str) -> Iterator[StatusMoves | None]:
    """Subscribed to the saga's status channel for the block; None when there is no Redis, or it cannot be reached
    (then nobody can be told of a move, and the caller must not wait)."""
    client = get_redis()
    if client is None:
        yield None
        return
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        with traced("redis", namespace="remote", operation="subscribe to status moves"):
            pubsub.subscribe(STATUS_CHANNEL.format(saga_id=saga_id))
            # Once Redis confirms, every later move reaches us; until then one could slip past the caller's check.
            confirmed = pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT_SECONDS)
        if confirmed is None or confirmed["type"] != "subscribe":
            raise redis.TimeoutError("the subscription was not confirmed")
    except redis.RedisError:
        logger.warning("status channel unreachable; saga %s is not waited for", saga_id, exc_info=True)
        pubsub.close()
        yield None
        return
    try:
        yield StatusMoves(pubsub)
    finally:
        pubsub.close()
