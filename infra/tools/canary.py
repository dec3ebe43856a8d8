"""Where a payment token may not be (docs/design.md §3, Access): anywhere but its saga's row. The canary test and
the soak drive unique tokens through every path, then search every sink for them.

The sinks: what the API answered and showed, every Redis key and value, every table of ours and of the payment
provider's ledger (the `input` of the `sagas` table aside: that is the one place a token is kept), every
execution's input and history, and every log line and EMF record the functions and the API wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chalicelib.adapters import step_functions
from chalicelib.adapters.tables import Base, Saga

TOKEN = re.compile(r"tok_[A-Za-z0-9_]+")


def leaks(tokens: Iterable[str], sinks: Mapping[str, Iterable[str]]) -> list[str]:
    """`sink: token` for every token found in a sink (tokens are matched whole)."""
    wanted = set(tokens)
    found = []
    for name, texts in sinks.items():
        seen = {match for text in texts for match in TOKEN.findall(text)} & wanted
        found += [f"{name}: {token}" for token in sorted(seen)]
    return found


def database_rows(session: Session, ledger: Engine | None = None) -> Iterator[str]:
    """Every row of every table of ours, the saga's `input` aside; and of the provider's ledger."""
    for table in Base.metadata.sorted_tables:
        kept = [c for c in table.columns if not (table.name == Saga.__tablename__ and c.name == "input")]
        for row in session.execute(select(*kept)):
            yield json.dumps([str(value) for value in row])
    if ledger is not None:
        from payment_provider import store

        with ledger.connect() as connection:
            for table in store.metadata.sorted_tables:
                for row in connection.execute(table.select()):
                    yield json.dumps([str(value) for value in row])


READERS: dict[str, Callable[[redis.Redis, bytes], Any]] = {
    "string": lambda client, key: client.get(key),
    "hash": lambda client, key: client.hgetall(key),
    "list": lambda client, key: client.lrange(key, 0, -1),
    "set": lambda client, key: client.smembers(key),
    "zset": lambda client, key: client.zrange(key, 0, -1),
}


def redis_contents(client: redis.Redis) -> Iterator[str]:
    """Every key and every value, whatever its type."""
    for key in client.scan_iter(count=1000):
        yield key.decode(errors="replace")
        kind = client.type(key).decode()  # type: ignore[union-attr]
        if kind in READERS:
            yield repr(READERS[kind](client, key))


def executions() -> Iterator[str]:
    """Every execution's input and history, of both state machines."""
    client = step_functions.sfn_client()
    for saga_type in ("purchase", "return"):
        paginator = client.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=step_functions.state_machine_arn(saga_type)):
            for execution in page["executions"]:
                arn = execution["executionArn"]
                yield json.dumps(step_functions.describe_execution(arn), default=str)
                yield json.dumps(step_functions.execution_history(arn), default=str)
