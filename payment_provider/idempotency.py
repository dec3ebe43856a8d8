"""Idempotency keys: a retried POST gets the first answer back instead of doing the work again.

A key is scoped to (account, endpoint, key) and remembers a digest of the request and the answer. The answer
is stored in the same transaction as the effect, so either both exist or neither does; a concurrent duplicate
blocks on the record's primary key until the first commits, then reads its answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

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


def run_once(
    engine: Engine, scope: IdempotencyScope, request_hash: str, perform: Callable[[Connection], Answer]
) -> Answer:
    """`perform`'s answer, run and stored once per scope; a repeat of the same request gets the stored answer.

    The same key with another request is refused (409) rather than answered with the other request's result.
    """
    for _ in range(_ATTEMPTS):
        try:
            with engine.begin() as connection:
                stored = _stored_answer(connection, scope, request_hash)
                if stored is not None:
                    return stored
                answer = perform(connection)
                if not answer.storable:
                    raise _Discarded(answer)
                connection.execute(
                    records.insert().values(
                        account=scope.account,
                        endpoint=scope.endpoint,
                        idempotency_key=scope.key,
                        request_hash=request_hash,
                        status_code=answer.status,
                        body=json.dumps(answer.body),
                        created_at_ms=round(time.time() * 1000),
                    )
                )
            return answer
        except _Discarded as discarded:
            return discarded.answer
        except IntegrityError:
            continue  # a concurrent request with this key committed first: the next attempt reads its answer
    return error_answer(
        409,
        "idempotency_key_in_use",
        "another request with this Idempotency-Key is in progress; retry it later",
        storable=False,
    )


def _stored_answer(connection: Connection, scope: IdempotencyScope, request_hash: str) -> Answer | None:
    row = connection.execute(
        select(records.c.request_hash, records.c.status_code, records.c.body).where(
            records.c.account == scope.account,
            records.c.endpoint == scope.endpoint,
            records.c.idempotency_key == scope.key,
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
