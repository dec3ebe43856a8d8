"""Charging through the client adapter: the test cards, and what a lost answer leaves behind."""

from __future__ import annotations

import time

import pytest

from chalicelib.adapters.payment_provider import (
    CardDeclined,
    PaymentProviderClient,
    ProviderRefused,
    ProviderUnavailable,
)
from payment_provider.launcher import RunningProvider
from tests.provider.support import (
    LOST_RESPONSE_HOLD_SECONDS,
    SHORT_CLIENT_TIMEOUT,
    charge_body,
    send,
    unique,
)


def test_a_visa_charge_succeeds_and_is_in_the_ledger(client: PaymentProviderClient) -> None:
    saga_id = unique("saga")
    charge = client.charge(saga_id, "tok_visa", 2599, "USD", idempotency_key=unique("key"))
    assert charge.id.startswith("ch_")
    assert (charge.saga_id, charge.amount_cents, charge.currency, charge.status) == (saga_id, 2599, "usd", "succeeded")
    assert client.charges_for_saga(saga_id) == [charge]
    assert client.get_charge(charge.id) == charge


def test_the_charge_answer_has_the_documented_shape(provider: RunningProvider) -> None:
    saga_id = unique("saga")
    reply = send(provider, "POST", "/v1/charges", charge_body(saga_id, amount_cents=700), idempotency_key=unique("k"))
    assert reply.status == 201
    assert reply.headers["Content-Type"] == "application/json"
    assert {key: reply.body[key] for key in ("status", "amount_cents", "currency", "saga_id")} == {
        "status": "succeeded",
        "amount_cents": 700,
        "currency": "usd",
        "saga_id": saga_id,
    }


def test_a_declined_card_is_402_and_charges_nothing(client: PaymentProviderClient, provider: RunningProvider) -> None:
    saga_id = unique("saga")
    with pytest.raises(CardDeclined):
        client.charge(saga_id, "tok_declined", 1000, "usd", idempotency_key=unique("key"))
    reply = send(provider, "POST", "/v1/charges", charge_body(saga_id, "tok_declined_x1"), idempotency_key=unique("k"))
    assert reply.status == 402
    assert reply.body["error"] == "card_declined"
    assert client.charges_for_saga(saga_id) == []


def test_an_unknown_token_is_declined_without_echoing_it(provider: RunningProvider) -> None:
    secret = "tok_live_4242SECRETVALUE"
    reply = send(provider, "POST", "/v1/charges", charge_body(unique("saga"), secret), idempotency_key=unique("k"))
    assert reply.status == 402
    assert reply.body == {"error": "card_declined", "message": "unknown payment token"}
    assert b"SECRETVALUE" not in reply.raw
    assert "SECRETVALUE" not in provider.output()


@pytest.mark.parametrize("token", ["tok_visa_", "tok_visa_" + "a" * 41, "tok_visa-x"])
def test_a_malformed_suffix_makes_an_unknown_token(client: PaymentProviderClient, token: str) -> None:
    with pytest.raises(CardDeclined, match="unknown payment token"):
        client.charge(unique("saga"), token, 1000, "usd", idempotency_key=unique("key"))


def test_a_suffixed_token_behaves_like_its_prefix(client: PaymentProviderClient) -> None:
    assert client.charge(unique("saga"), "tok_visa_abc123", 1000, "usd", unique("key")).status == "succeeded"
    with pytest.raises(CardDeclined):
        client.charge(unique("saga"), "tok_declined_abc123", 1000, "usd", unique("key"))


def test_a_flaky_card_fails_once_then_the_retry_charges_once(client: PaymentProviderClient) -> None:
    saga_id, key = unique("saga"), unique("key")
    with pytest.raises(ProviderUnavailable, match="503"):
        client.charge(saga_id, "tok_flaky", 1500, "usd", idempotency_key=key)
    assert client.charges_for_saga(saga_id) == []
    charge = client.charge(saga_id, "tok_flaky", 1500, "usd", idempotency_key=key)
    assert client.charge(saga_id, "tok_flaky", 1500, "usd", idempotency_key=key) == charge
    assert client.charges_for_saga(saga_id) == [charge]


def test_a_flaky_card_fails_again_under_a_new_key(client: PaymentProviderClient) -> None:
    saga_id = unique("saga")
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            client.charge(saga_id, "tok_flaky_b7", 1500, "usd", idempotency_key=unique("key"))
    assert client.charges_for_saga(saga_id) == []


def test_a_lost_answer_times_out_and_the_retry_gets_the_same_charge(
    provider: RunningProvider, client: PaymentProviderClient
) -> None:
    impatient = PaymentProviderClient(provider.url, provider.api_key, timeout_seconds=SHORT_CLIENT_TIMEOUT)
    saga_id, key = unique("saga"), unique("key")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        impatient.charge(saga_id, "tok_lost_response", 4200, "usd", idempotency_key=key)
    assert time.monotonic() - started < LOST_RESPONSE_HOLD_SECONDS
    captured = client.charges_for_saga(saga_id)
    assert len(captured) == 1
    assert impatient.charge(saga_id, "tok_lost_response", 4200, "usd", idempotency_key=key) == captured[0]
    assert client.charges_for_saga(saga_id) == captured


def test_a_lost_answer_ends_with_the_connection_closed_and_nothing_written(provider: RunningProvider) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        send(
            provider,
            "POST",
            "/v1/charges",
            charge_body(unique("saga"), "tok_lost_response_z"),
            idempotency_key=unique("k"),
        )
    assert time.monotonic() - started >= LOST_RESPONSE_HOLD_SECONDS - 0.1


def test_an_unknown_charge_is_none_and_bad_ids_are_refused(client: PaymentProviderClient) -> None:
    assert client.get_charge("ch_doesnotexist") is None
    with pytest.raises(ProviderRefused) as refused:
        client.refund("ch_doesnotexist", 100, idempotency_key=unique("key"))
    assert (refused.value.status, refused.value.code) == (404, "charge_not_found")
