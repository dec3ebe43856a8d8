"""`Prefer: wait=N` on POST /purchases and /returns (docs/design.md §3.1): the outcome in one call, through
chalice.test.Client, with sagas run on the local engine; the wait is told of the outcome through Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import event

from app import app
from chalicelib.adapters import database, saga_cache
from chalicelib.service import sagas
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import final_view

JSON = {"Content-Type": "application/json"}
SAGA_ACCEPTED_KEYS = {"saga_id", "type", "status", "links"}
pytestmark = pytest.mark.backends("embedded", "postgres")
"""The wait is Redis's (a channel per saga) and the answer the API's; the database is read once, as by GET. So
the embedded stand-in (fakeredis) and a real Redis each run it; MySQL adds nothing PostgreSQL does not."""


@pytest.fixture
def client(backend: Backend, engine: LocalEngine) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _post(client: Client, path: str, body: dict[str, Any], prefer: str | None = None, key: str | None = None) -> Any:
    headers = JSON | ({"Prefer": prefer} if prefer is not None else {}) | ({"Idempotency-Key": key} if key else {})
    return client.http.post(path, headers=headers, body=json.dumps(body))


def _purchase(**overrides: Any) -> dict[str, Any]:
    return {"customer_id": "c-wait", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"} | overrides


def _applied(response: Any) -> str | None:
    return {name.lower(): value for name, value in response.headers.items()}.get("preference-applied")


def test_a_purchase_that_completes_within_the_wait_is_answered_with_the_saga(client: Client) -> None:
    response = _post(client, "/purchases", _purchase(), prefer="wait=20")

    assert response.status_code == 200
    assert _applied(response) == "wait=20"
    assert response.headers["Vary"] == "Prefer"
    saga = response.json_body
    assert saga["status"] == "COMPLETED"
    assert set(saga["result"]) == {"order_id"}
    assert saga == client.http.get(f"/sagas/{saga['saga_id']}").json_body


def test_a_compensated_purchase_is_answered_with_its_compensations(client: Client) -> None:
    response = _post(client, "/purchases", _purchase(payment_token="tok_declined"), prefer="wait=20")

    assert response.status_code == 200
    assert _applied(response) == "wait=20"
    saga = response.json_body
    assert saga["status"] == "COMPENSATED"
    assert [(step["name"], step["status"]) for step in saga["steps"]] == [
        ("reserve_stock", "SUCCEEDED"),
        ("process_payment", "FAILED"),
        ("release_stock", "SUCCEEDED"),
    ]
    assert saga == client.http.get(f"/sagas/{saga['saga_id']}").json_body
    assert client.http.get("/products/SKU-MOUSE").json_body["reserved"] == 0


def test_a_return_is_answered_with_its_outcome(client: Client) -> None:
    bought = _post(client, "/purchases", _purchase(quantity=3), prefer="wait=20").json_body
    body = {"customer_id": "c-wait", "order_id": bought["result"]["order_id"], "quantity": 2, "reason": "too big"}

    response = _post(client, "/returns", body, prefer="respond-async, wait=20")

    assert response.status_code == 200
    assert _applied(response) == "wait=20"
    returned = response.json_body
    assert (returned["type"], returned["status"], returned["result"]["refund_cents"]) == ("return", "COMPLETED", 5000)
    assert returned == client.http.get(f"/sagas/{returned['saga_id']}").json_body
    assert client.http.get("/products/SKU-MOUSE").json_body["on_hand"] == 999


def test_a_wait_over_twenty_seconds_is_cut_to_twenty_and_says_so(client: Client) -> None:
    response = _post(client, "/purchases", _purchase(), prefer="wait=3600")

    assert response.status_code == 200
    assert _applied(response) == "wait=20"
    assert response.json_body["status"] == "COMPLETED"


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement this process sends while the block runs (the API's; steps run in their workers)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = database.get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize("seconds", [0, 1])
def test_a_saga_still_running_when_the_wait_ends_is_accepted_and_the_wait_reads_the_database_once(
    client: Client, short_timeouts: LocalEngine, monkeypatch: pytest.MonkeyPatch, seconds: int
) -> None:
    """The first attempt of reserve_stock hangs until its one-second timeout kills it: the saga cannot have an
    outcome before the wait ends. The wait itself sends the database nothing but the one read at its end."""
    reads: list[list[str]] = []
    waits: list[list[str]] = []
    read_saga, await_outcome = sagas.read_saga, sagas.await_outcome

    def spied(calls: list[list[str]], real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            with _statements() as sent:
                answer = real(*args)
            calls.append(sent)
            return answer

        return call

    monkeypatch.setattr(sagas, "read_saga", spied(reads, read_saga))
    monkeypatch.setattr(sagas, "await_outcome", spied(waits, await_outcome))

    response = _post(client, "/purchases", _purchase(faults={"reserve_stock": "timeout:1"}), prefer=f"wait={seconds}")

    assert response.status_code == 202
    assert _applied(response) == f"wait={seconds}"
    accepted = response.json_body
    assert set(accepted) == SAGA_ACCEPTED_KEYS
    assert accepted["status"] == "RUNNING"
    assert len(waits) == 1 and len(reads) == 1, "the wait reads the saga once, at its end"
    assert waits[0] == reads[0], "nothing but that read reached the database while waiting"
    assert final_view(client, accepted["saga_id"])["status"] == "COMPLETED"


def test_the_wait_ends_when_the_sagas_channel_tells_of_its_outcome(
    client: Client, short_timeouts: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saga is held a second (reserve_stock's first attempt times out), so the waiter has subscribed long before
    the outcome; what ends its wait is the move published on the saga's channel, not the end of the 20 seconds."""
    told: list[dict[str, Any] | None] = []
    next_move = saga_cache.StatusMoves.next_move

    def spied(moves: saga_cache.StatusMoves, timeout: float) -> dict[str, Any] | None:
        told.append(next_move(moves, timeout))
        return told[-1]

    monkeypatch.setattr(saga_cache.StatusMoves, "next_move", spied)

    response = _post(client, "/purchases", _purchase(faults={"reserve_stock": "timeout:1"}), prefer="wait=20")

    assert response.status_code == 200
    assert response.json_body["status"] == "COMPLETED"
    assert told and told[-1] is not None and told[-1]["status"] == "COMPLETED"
    assert all(move is not None and move["status"] == "RUNNING" for move in told[:-1])


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-1", "wait=1.5", "wait=", "wait", "handling=lenient"])
def test_a_wait_that_cannot_be_read_or_another_preference_is_ignored(client: Client, prefer: str) -> None:
    response = _post(client, "/purchases", _purchase(), prefer=prefer)

    assert response.status_code == 202
    assert _applied(response) is None
    assert response.headers["Vary"] == "Prefer"
    assert set(response.json_body) == SAGA_ACCEPTED_KEYS
    assert final_view(client, response.json_body["saga_id"])["status"] == "COMPLETED"


def test_a_replay_with_its_idempotency_key_waits_for_the_same_saga(client: Client) -> None:
    first = _post(client, "/purchases", _purchase(), key="k-wait-1")
    assert first.status_code == 202
    ended = final_view(client, first.json_body["saga_id"])

    replay = _post(client, "/purchases", _purchase(), prefer="wait=5", key="k-wait-1")
    plain = _post(client, "/purchases", _purchase(), key="k-wait-1")

    assert replay.status_code == 200
    assert _applied(replay) == "wait=5"
    assert replay.json_body == ended
    assert (plain.status_code, plain.json_body["saga_id"]) == (202, ended["saga_id"])
    assert _applied(plain) is None


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:9/0"], ids=["no-redis", "redis-unreachable"])
def test_without_a_redis_to_be_told_through_the_answer_is_accepted_at_once(
    client: Client, monkeypatch: pytest.MonkeyPatch, redis_url: str | None
) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "redis_url", redis_url)
    monkeypatch.setattr(settings, "redis_host", None)
    saga_cache.reset_redis()
    try:
        response = _post(client, "/purchases", _purchase(), prefer="wait=20")
    finally:
        monkeypatch.undo()
        saga_cache.reset_redis()

    assert response.status_code == 202
    assert _applied(response) is None
    assert final_view(client, response.json_body["saga_id"])["status"] == "COMPLETED"


def test_each_move_of_a_saga_is_published_once_and_a_stale_or_repeated_write_is_not(backend: Backend) -> None:
    saga_id = "0" * 31 + "1"
    with saga_cache.status_moves(saga_id) as moves:
        assert moves is not None
        saga_cache.write_through(saga_id, "RUNNING", 1)
        saga_cache.write_through(saga_id, "COMPLETED", 3)
        saga_cache.write_through(saga_id, "COMPENSATING", 2)  # older than what is cached: not written, not told
        saga_cache.store_view(saga_id, "COMPLETED", 3, {"saga_id": saga_id})  # a reader caching: no move

        told = [moves.next_move(timeout=5), moves.next_move(timeout=5), moves.next_move(timeout=0.2)]

    assert told == [{"status": "RUNNING", "version": 1}, {"status": "COMPLETED", "version": 3}, None]
