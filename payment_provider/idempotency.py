"""Idempotency keys, as Stripe keeps them: a retried POST gets the first answer back instead of doing the work again.

A key is scoped to (account, endpoint, key) and remembers a digest of the request and the answer. The answer
is stored in the same transaction as the effect, so either both exist or neither does. While a request with a
key is being worked on, another request with that key is answered 409 `idempotency_key_in_use`: the caller must
try again later, and never read that as "nothing happened". A key is remembered for `ttl_seconds` (Stripe: 24 h);
after that the same key is a new request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from payment_provider.answers import Answer, error_answer
from payment_provider.store import idempotency_records as records

_ATTEMPTS = 3


@dataclass(frozen=True)
class IdempotencyScope:
    account: str
    """A digest of the API key: keys of one account never collide with another's."""
    endpoint: str
    key: str


class _Discarded(Exception):
    """Rolls back an answer that must not be remembered, with whatever the attempt wrote."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def in_use() -> Answer:
    return error_answer(
        409,
        "idempotency_key_in_use",
        "another request with this Idempotency-Key is in progress; retry it later",
        storable=False,
    )


class IdempotencyKeys:
    """Runs each keyed request once while its key lives; one provider process holds the keys in progress."""

    def __init__(self, engine: Engine, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._ttl_ms = round(ttl_seconds * 1000)
        self._clock = clock
        self._in_progress: set[IdempotencyScope] = set()
        self._lock = threading.Lock()

    def run_once(
        self,
        scope: IdempotencyScope,
        request_hash: str,
        perform: Callable[[Connection], Answer],
        hold_seconds: float = 0.0,
    ) -> Answer:
        """`perform`'s answer, run and stored once per live key; a repeat of the same request gets the stored answer.

        The same key with another request is refused (409) rather than answered with the other request's result.
        `hold_seconds` delays the work (a capture that commits late), with no transaction open meanwhile.
        """
        with self._engine.connect() as connection:
            stored = self._stored_answer(connection, scope, request_hash)
        if stored is not None:
            return stored
        with self._claim(scope) as claimed:
            if not claimed:
                return in_use()
            if hold_seconds > 0:
                time.sleep(hold_seconds)
            return self._perform_and_store(scope, request_hash, perform)

    def _perform_and_store(
        self, scope: IdempotencyScope, request_hash: str, perform: Callable[[Connection], Answer]
    ) -> Answer:
        for _ in range(_ATTEMPTS):
            try:
                with self._engine.begin() as connection:
                    stored = self._stored_answer(connection, scope, request_hash)
                    if stored is not None:
                        return stored
                    answer = perform(connection)
                    if not answer.storable:
                        raise _Discarded(answer)
                    connection.execute(records.delete().where(*_of(scope)))  # an expired record of this key
                    connection.execute(
                        records.insert().values(
                            account=scope.account,
                            endpoint=scope.endpoint,
                            idempotency_key=scope.key,
                            request_hash=request_hash,
                            status_code=answer.status,
                            body=json.dumps(answer.body),
                            created_at_ms=self._now_ms(),
                        )
                    )
                return answer
            except _Discarded as discarded:
                return discarded.answer
            except IntegrityError:
                continue  # a concurrent request with this key committed first: the next attempt reads its answer
        return in_use()

    @contextmanager
    def _claim(self, scope: IdempotencyScope) -> Iterator[bool]:
        with self._lock:
            claimed = scope not in self._in_progress
            self._in_progress.add(scope)
        try:
            yield claimed
        finally:
            if claimed:
                with self._lock:
                    self._in_progress.discard(scope)

    def _stored_answer(self, connection: Connection, scope: IdempotencyScope, request_hash: str) -> Answer | None:
        row = connection.execute(
            select(records.c.request_hash, records.c.status_code, records.c.body).where(
                *_of(scope), records.c.created_at_ms > self._now_ms() - self._ttl_ms
            )
        ).one_or_none()
        if row is None:
            return None
        if row.request_hash != request_hash:
            return error_answer(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with other parameters",
                storable=False,
            )
        return Answer(row.status_code, json.loads(row.body))

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)


def _of(scope: IdempotencyScope) -> tuple[ColumnElement[bool], ...]:
    return (
        records.c.account == scope.account,
        records.c.endpoint == scope.endpoint,
        records.c.idempotency_key == scope.key,
    )
