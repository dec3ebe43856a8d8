"""The stand-in behaves as a real provider does in time: its search by saga lags its writes, a slow capture commits
late (its key answering 409 `idempotency_key_in_use` meanwhile), and idempotency keys expire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from chalicelib.adapters.payment_provider import Charge, PaymentProviderClient, ProviderUnavailable
from payment_provider.launcher import RunningProvider, start_provider
from tests.provider.support import SHORT_CLIENT_TIMEOUT, unique

LAG_SECONDS = 8.0
HOLD_SECONDS = 3.0
KEY_TTL_SECONDS = 4.0
_T = TypeVar("_T")


@pytest.fixture(scope="module")
def real_timing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    database = tmp_path_factory.mktemp("real-timing") / "ledger.db"
    env = {
        "PROVIDER_LISTING_LAG_SECONDS": str(LAG_SECONDS),
        "PROVIDER_SLOW_CAPTURE_SECONDS": str(HOLD_SECONDS),
        "PROVIDER_KEY_TTL_SECONDS": str(KEY_TTL_SECONDS),
    }
    with start_provider(database_url=f"sqlite:///{database}", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def every_capture_slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    database = tmp_path_factory.mktemp("slow-captures") / "ledger.db"
    env = {"PROVIDER_SLOW_CAPTURE_RATE": "1", "PROVIDER_SLOW_CAPTURE_SECONDS": str(HOLD_SECONDS)}
    with start_provider(database_url=f"sqlite:///{database}", env=env) as running:
        yield running


def eventually(read: Callable[[], _T], until: Callable[[_T], bool], timeout_seconds: float = 60.0) -> _T:
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_charge_reaches_the_search_by_saga_late_but_reads_by_id_at_once(real_timing: RunningProvider) -> None:
    client = PaymentProviderClient(real_timing.url, real_timing.api_key)
    saga_id = unique("saga")
    charge = client.charge(saga_id, "tok_visa", 1500, "usd", idempotency_key=unique("key"))
    assert client.charges_for_saga(saga_id) == []  # the search has not caught up: an empty answer proves nothing
    assert client.get_charge(charge.id) == charge
    assert charge in client.list_charges()
    assert eventually(lambda: client.charges_for_saga(saga_id), bool) == [charge]


def test_a_slow_capture_commits_late_and_its_key_is_in_use_meanwhile(real_timing: RunningProvider) -> None:
    impatient = PaymentProviderClient(real_timing.url, real_timing.api_key, timeout_seconds=SHORT_CLIENT_TIMEOUT)
    saga_id, key = unique("saga"), unique("key")
    with pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        impatient.charge(saga_id, "tok_slow_capture", 700, "usd", idempotency_key=key)
    with pytest.raises(ProviderUnavailable, match="idempotency_key_in_use"):
        impatient.charge(saga_id, "tok_slow_capture", 700, "usd", idempotency_key=key)
    assert [charge for charge in impatient.list_charges() if charge.saga_id == saga_id] == []
    replayed = eventually(lambda: _charge_or_none(impatient, saga_id, key), lambda found: found is not None)
    assert replayed is not None
    assert [charge for charge in impatient.list_charges() if charge.saga_id == saga_id] == [replayed]
    assert impatient.charge(saga_id, "tok_slow_capture", 700, "usd", idempotency_key=key) == replayed


def test_the_slow_capture_rate_holds_any_card(every_capture_slow: RunningProvider) -> None:
    impatient = PaymentProviderClient(
        every_capture_slow.url, every_capture_slow.api_key, timeout_seconds=SHORT_CLIENT_TIMEOUT
    )
    saga_id, key = unique("saga"), unique("key")
    with pytest.raises(ProviderUnavailable, match="outcome is unknown"):
        impatient.charge(saga_id, "tok_visa", 700, "usd", idempotency_key=key)
    committed = eventually(
        lambda: [charge for charge in impatient.list_charges() if charge.saga_id == saga_id], lambda found: bool(found)
    )
    assert [charge.amount_cents for charge in committed] == [700]


def test_an_expired_key_is_a_new_request(real_timing: RunningProvider) -> None:
    client = PaymentProviderClient(real_timing.url, real_timing.api_key)
    saga_id, key = unique("saga"), unique("key")
    first = client.charge(saga_id, "tok_visa", 900, "usd", idempotency_key=key)
    assert client.charge(saga_id, "tok_visa", 900, "usd", idempotency_key=key) == first
    time.sleep(KEY_TTL_SECONDS + 0.5)
    second = client.charge(saga_id, "tok_visa", 900, "usd", idempotency_key=key)
    assert second.id != first.id
    assert sorted(c.id for c in client.list_charges() if c.saga_id == saga_id) == sorted([first.id, second.id])


def _charge_or_none(client: PaymentProviderClient, saga_id: str, key: str) -> Charge | None:
    try:
        return client.charge(saga_id, "tok_slow_capture", 700, "usd", idempotency_key=key)
    except ProviderUnavailable:
        return None
