"""Fixtures: real provider processes started through the launcher, and the client adapter on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.adapters.payment_provider import PaymentProviderClient
from payment_provider.launcher import RunningProvider, start_provider
from tests.provider.support import FAST_SETTLE_SECONDS, LOST_RESPONSE_HOLD_SECONDS


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    """The provider most tests share: refunds settle in 300 s, a lost answer holds its connection 2 s."""
    database = tmp_path_factory.mktemp("provider") / "ledger.db"
    env = {"PROVIDER_LOST_RESPONSE_HOLD_SECONDS": str(LOST_RESPONSE_HOLD_SECONDS), "REFUND_SETTLE_SECONDS": "300"}
    with start_provider(database_url=f"sqlite:///{database}", env=env) as running:
        yield running


@pytest.fixture(scope="session")
def fast_settling_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    """A provider whose refunds settle after half a second."""
    database = tmp_path_factory.mktemp("fast-settle") / "ledger.db"
    env = {"REFUND_SETTLE_SECONDS": str(FAST_SETTLE_SECONDS)}
    with start_provider(database_url=f"sqlite:///{database}", env=env) as running:
        yield running


@pytest.fixture
def client(provider: RunningProvider) -> PaymentProviderClient:
    return PaymentProviderClient(provider.url, provider.api_key, timeout_seconds=5.0)
