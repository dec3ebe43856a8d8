"""Refunds: partial ones add up, never beyond the charge; pending ones can be cancelled, settled ones not."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from chalicelib.adapters.payment_provider import Charge, PaymentProviderClient, ProviderRefused, Refund
from payment_provider.launcher import RunningProvider
from tests.provider.support import FAST_SETTLE_SECONDS, send, unique


def charged(client: PaymentProviderClient, amount_cents: int = 1000, saga_id: str | None = None) -> Charge:
    return client.charge(saga_id or unique("saga"), "tok_visa", amount_cents, "usd", idempotency_key=unique("key"))


def wait_until_settled(client: PaymentProviderClient, refund: Refund) -> Refund:
    deadline = time.monotonic() + FAST_SETTLE_SECONDS + 5
    while time.monotonic() < deadline:
        current = client.get_refund(refund.id)
        assert current is not None
        if current.status == "settled":
            return current
        time.sleep(0.05)
    raise AssertionError(f"refund {refund.id} did not settle")


def test_partial_refunds_add_up_to_the_charge_and_no_further(client: PaymentProviderClient) -> None:
    charge = charged(client, 1000)
    first = client.refund(charge.id, 600, idempotency_key=unique("key"))
    second = client.refund(charge.id, 400, idempotency_key=unique("key"))
    assert (first.status, second.status) == ("pending", "pending")
    assert (first.charge_id, first.amount_cents) == (charge.id, 600)
    assert client.charges_for_saga(charge.saga_id)[0].refunded_cents == 1000
    with pytest.raises(ProviderRefused) as refused:
        client.refund(charge.id, 1, idempotency_key=unique("key"))
    assert (refused.value.status, refused.value.code) == (400, "refund_exceeds_charge")
    assert "amount_cents" in refused.value.message


def test_a_refund_larger_than_the_charge_is_400(client: PaymentProviderClient) -> None:
    charge = charged(client, 500)
    with pytest.raises(ProviderRefused, match="refund_exceeds_charge"):
        client.refund(charge.id, 501, idempotency_key=unique("key"))
    assert client.list_refunds(charge.id) == []


def test_cancelling_a_pending_refund_gives_its_amount_back(client: PaymentProviderClient) -> None:
    charge = charged(client, 1000)
    refund = client.refund(charge.id, 700, idempotency_key=unique("key"))
    assert client.get_charge(charge.id) == replace(charge, refunded_cents=700)
    cancelled = client.cancel_refund(refund.id)
    assert cancelled == Refund(refund.id, charge.id, 700, "cancelled")
    assert client.cancel_refund(refund.id) == cancelled
    assert client.get_refund(refund.id) == cancelled
    assert client.charges_for_saga(charge.saga_id)[0].refunded_cents == 0
    assert client.refund(charge.id, 1000, idempotency_key=unique("key")).status == "pending"


def test_the_cancel_answer_has_the_documented_shape(provider: RunningProvider, client: PaymentProviderClient) -> None:
    refund = client.refund(charged(client).id, 100, idempotency_key=unique("key"))
    reply = send(provider, "POST", f"/v1/refunds/{refund.id}/cancel")
    assert reply.status == 200
    assert {key: reply.body[key] for key in ("id", "charge_id", "amount_cents", "status")} == {
        "id": refund.id,
        "charge_id": refund.charge_id,
        "amount_cents": 100,
        "status": "cancelled",
    }
    assert send(provider, "POST", f"/v1/refunds/{refund.id}/cancel").raw == reply.raw


def test_a_settled_refund_cannot_be_cancelled(fast_settling_provider: RunningProvider) -> None:
    client = PaymentProviderClient(fast_settling_provider.url, fast_settling_provider.api_key)
    charge = charged(client, 1000)
    refund = client.refund(charge.id, 250, idempotency_key=unique("key"))
    assert refund.status == "pending"
    settled = wait_until_settled(client, refund)
    with pytest.raises(ProviderRefused) as refused:
        client.cancel_refund(refund.id)
    assert (refused.value.status, refused.value.code) == (409, "refund_settled")
    assert client.get_refund(refund.id) == settled
    assert client.get_charge(charge.id) == replace(charge, refunded_cents=250)


def test_unknown_refunds_are_404(client: PaymentProviderClient, provider: RunningProvider) -> None:
    assert client.get_refund("re_doesnotexist") is None
    with pytest.raises(ProviderRefused) as refused:
        client.cancel_refund("re_doesnotexist")
    assert (refused.value.status, refused.value.code) == (404, "refund_not_found")
    assert send(provider, "GET", "/v1/refunds/re_nope").body["error"] == "refund_not_found"


def test_charges_of_a_saga_list_their_refunded_cents(provider: RunningProvider, client: PaymentProviderClient) -> None:
    saga_id = unique("saga")
    first, second = charged(client, 1000, saga_id), charged(client, 300, saga_id)
    client.refund(first.id, 200, idempotency_key=unique("key"))
    client.cancel_refund(client.refund(first.id, 50, idempotency_key=unique("key")).id)
    charged(client, 5000)
    reply = send(provider, "GET", f"/v1/charges?saga_id={saga_id}")
    assert reply.status == 200
    assert [
        {key: item[key] for key in ("id", "saga_id", "amount_cents", "refunded_cents", "status")}
        for item in reply.body["items"]
    ] == [
        {"id": first.id, "saga_id": saga_id, "amount_cents": 1000, "refunded_cents": 200, "status": "succeeded"},
        {"id": second.id, "saga_id": saga_id, "amount_cents": 300, "refunded_cents": 0, "status": "succeeded"},
    ]
    assert send(provider, "GET", f"/v1/charges?saga_id={unique('none')}").body["items"] == []


def test_listings_page_through_everything_with_a_cursor(fast_settling_provider: RunningProvider) -> None:
    client = PaymentProviderClient(fast_settling_provider.url, fast_settling_provider.api_key)
    made = [charged(client, 100 + index) for index in range(5)]
    everything = client.list_charges()
    assert [charge.id for charge in everything][-5:] == [charge.id for charge in made]
    page = send(fast_settling_provider, "GET", "/v1/charges?limit=2").body
    assert (len(page["items"]), page["has_more"]) == (2, True)
    after = send(fast_settling_provider, "GET", f"/v1/charges?limit=2&starting_after={page['items'][-1]['id']}").body
    assert [item["id"] for item in after["items"]] == [charge.id for charge in everything[2:4]]
    refunds = [client.refund(made[0].id, 10, idempotency_key=unique("key")) for _ in range(3)]
    assert client.list_refunds(made[0].id) == refunds
    assert {refund.id for refund in refunds} <= {refund.id for refund in client.list_refunds()}


def test_an_unknown_cursor_is_400_naming_it(provider: RunningProvider) -> None:
    reply = send(provider, "GET", "/v1/charges?starting_after=ch_unknown")
    assert (reply.status, reply.body["param"]) == (400, "starting_after")
