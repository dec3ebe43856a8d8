"""Idempotency keys: a repeat gets the first answer, a reused key is refused, duplicates never double-charge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.adapters.payment_provider import (
    CardDeclined,
    PaymentProviderClient,
    ProviderRefused,
)
from payment_provider.launcher import RunningProvider
from tests.provider.support import assert_concurrent_duplicates_charge_once, charge_body, run_together, send, unique


def test_the_same_key_and_body_get_the_same_answer_and_one_charge(provider: RunningProvider) -> None:
    saga_id, key = unique("saga"), unique("key")
    first = send(provider, "POST", "/v1/charges", charge_body(saga_id), idempotency_key=key)
    again = send(provider, "POST", "/v1/charges", charge_body(saga_id), idempotency_key=key)
    assert (first.status, again.status) == (201, 201)
    assert again.raw == first.raw
    listed = send(provider, "GET", f"/v1/charges?saga_id={saga_id}").body["items"]
    assert [item["id"] for item in listed] == [first.body["id"]]


def test_a_declined_answer_is_repeated_for_its_key(provider: RunningProvider) -> None:
    saga_id, key = unique("saga"), unique("key")
    first = send(provider, "POST", "/v1/charges", charge_body(saga_id, "tok_declined"), idempotency_key=key)
    again = send(provider, "POST", "/v1/charges", charge_body(saga_id, "tok_declined"), idempotency_key=key)
    assert (first.status, again.status, again.raw) == (402, 402, first.raw)


def test_the_same_key_with_another_body_is_409_and_charges_nothing_more(client: PaymentProviderClient) -> None:
    saga_id, key = unique("saga"), unique("key")
    first = client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key)
    for changed in (
        {"amount_cents": 1001},
        {"currency": "eur"},
        {"payment_token": "tok_visa_other"},
        {"saga_id": unique("saga")},
    ):
        arguments = {"saga_id": saga_id, "payment_token": "tok_visa", "amount_cents": 1000, "currency": "usd"}
        with pytest.raises(ProviderRefused) as refused:
            client.charge(**{**arguments, **changed}, idempotency_key=key)  # type: ignore[arg-type]
        assert (refused.value.status, refused.value.code) == (409, "idempotency_key_reused")
    assert client.charges_for_saga(saga_id) == [first]


def test_a_retry_after_a_decline_with_the_key_reused_for_another_card_is_409(client: PaymentProviderClient) -> None:
    saga_id, key = unique("saga"), unique("key")
    with pytest.raises(CardDeclined):
        client.charge(saga_id, "tok_declined", 1000, "usd", idempotency_key=key)
    with pytest.raises(ProviderRefused, match="409"):
        client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key)
    assert client.charges_for_saga(saga_id) == []


def test_the_currency_is_compared_after_normalising_its_case(client: PaymentProviderClient) -> None:
    saga_id, key = unique("saga"), unique("key")
    first = client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key)
    assert client.charge(saga_id, "tok_visa", 1000, "USD", idempotency_key=key) == first


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/refunds"])
def test_a_post_without_an_idempotency_key_is_400(provider: RunningProvider, path: str) -> None:
    body = charge_body(unique("saga")) if path == "/v1/charges" else {"charge_id": "ch_x", "amount_cents": 1}
    for headers in ({}, {"Idempotency-Key": "   "}):
        reply = send(provider, "POST", path, body, headers=headers)
        assert reply.status == 400
        assert reply.body["error"] == "missing_idempotency_key"
        assert "Idempotency-Key" in reply.body["message"]


def test_an_overlong_idempotency_key_is_400(provider: RunningProvider) -> None:
    reply = send(provider, "POST", "/v1/charges", charge_body(unique("saga")), idempotency_key="k" * 256)
    assert (reply.status, reply.body["error"]) == (400, "invalid_idempotency_key")


def test_keys_are_per_endpoint(client: PaymentProviderClient) -> None:
    key = unique("key")
    charge = client.charge(unique("saga"), "tok_visa", 1000, "usd", idempotency_key=key)
    refund = client.refund(charge.id, 100, idempotency_key=key)
    assert refund.charge_id == charge.id


def test_a_refund_retried_with_its_key_refunds_once(client: PaymentProviderClient) -> None:
    charge = client.charge(unique("saga"), "tok_visa", 1000, "usd", idempotency_key=unique("key"))
    key = unique("key")
    first = client.refund(charge.id, 300, idempotency_key=key)
    assert client.refund(charge.id, 300, idempotency_key=key) == first
    assert client.list_refunds(charge.id) == [first]
    with pytest.raises(ProviderRefused, match="409"):
        client.refund(charge.id, 301, idempotency_key=key)


def test_concurrent_duplicates_charge_exactly_once(client: PaymentProviderClient) -> None:
    assert_concurrent_duplicates_charge_once(client)


def test_concurrent_refunds_under_different_keys_never_exceed_the_charge(client: PaymentProviderClient) -> None:
    charge = client.charge(unique("saga"), "tok_visa", 1000, "usd", idempotency_key=unique("key"))
    results = run_together(8, lambda: client.refund(charge.id, 300, idempotency_key=unique("key")))
    refused = [result for result in results if isinstance(result, ProviderRefused)]
    assert len(refused) == 5
    assert {error.code for error in refused} == {"refund_exceeds_charge"}
    assert client.get_charge(charge.id) == replace(charge, refunded_cents=900)
    assert sum(refund.amount_cents for refund in client.list_refunds(charge.id)) == 900
