"""Chaos for soaks: POSTs that fail before acting store nothing; POSTs that lose their answer still commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.adapters.payment_provider import PaymentProviderClient, ProviderUnavailable
from payment_provider.launcher import RunningProvider, start_provider
from tests.provider.support import charge_body, send, unique


@pytest.fixture(scope="module")
def always_failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    database = tmp_path_factory.mktemp("chaos-fault") / "ledger.db"
    with start_provider(database_url=f"sqlite:///{database}", env={"PROVIDER_FAULT_RATE": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def always_losing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    database = tmp_path_factory.mktemp("chaos-lost") / "ledger.db"
    env = {"PROVIDER_LOST_RATE": "1", "PROVIDER_LOST_RESPONSE_HOLD_SECONDS": "2", "PROVIDER_SEED": "7"}
    with start_provider(database_url=f"sqlite:///{database}", env=env) as running:
        yield running


def test_with_fault_rate_1_every_post_is_503_and_nothing_is_stored(always_failing: RunningProvider) -> None:
    saga_id, key = unique("saga"), unique("key")
    for _ in range(3):  # the same key again: a 503 is not remembered, so the key is not stuck either
        reply = send(always_failing, "POST", "/v1/charges", charge_body(saga_id), idempotency_key=key)
        assert (reply.status, reply.body["error"]) == (503, "provider_unavailable")
    for path in ("/v1/refunds", "/v1/refunds/re_x/cancel"):
        reply = send(always_failing, "POST", path, {"charge_id": "ch_x", "amount_cents": 1}, idempotency_key=key)
        assert reply.status == 503
    assert send(always_failing, "GET", "/v1/charges").body["items"] == []
    assert send(always_failing, "GET", "/v1/refunds").body["items"] == []


def test_with_fault_rate_1_reads_and_auth_still_work(always_failing: RunningProvider) -> None:
    assert send(always_failing, "GET", "/v1/charges/ch_x").status == 404
    assert send(always_failing, "POST", "/v1/charges", charge_body("s"), api_key="wrong").status == 401


def test_with_lost_rate_1_the_charge_commits_but_the_answer_never_comes(always_losing: RunningProvider) -> None:
    impatient = PaymentProviderClient(always_losing.url, always_losing.api_key, timeout_seconds=0.3)
    saga_id = unique("saga")
    with pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        impatient.charge(saga_id, "tok_visa", 1234, "usd", idempotency_key=unique("key"))
    [charge] = impatient.charges_for_saga(saga_id)
    assert charge.amount_cents == 1234


def test_chaos_is_off_by_default(tmp_path: Path) -> None:
    with start_provider(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", env=_chaos_unset()) as running:
        replies = [
            send(running, "POST", "/v1/charges", charge_body(unique("saga")), idempotency_key=unique("k"))
            for _ in range(20)
        ]
    assert {reply.status for reply in replies} == {201}


def _chaos_unset() -> dict[str, str | None]:
    names = ("PROVIDER_FAULT_RATE", "PROVIDER_LOST_RATE", "PROVIDER_LATENCY_MS", "PROVIDER_SEED")
    return dict.fromkeys(names)
