"""`make cost`: transitions and invocations counted from real execution histories, and their prices."""

from __future__ import annotations

import pytest

from infra.engine.local_engine import LocalEngine
from infra.reports.cost import PathCost, measure
from tests.conftest import Backend
from tests.helpers import purchase

pytestmark = pytest.mark.backends("postgres")
"""Transitions and invocations are counted from execution histories, which the database does not change. So
one backend: PostgreSQL, the deployed default."""


@pytest.mark.parametrize(
    ("faults", "transitions", "invocations"),
    [({}, 4, 3), ({"confirm_sale": "fail"}, 6, 5), ({"process_payment": "transient:1"}, 5, 4)],
    ids=["completed", "compensated", "one-retry"],
)
def test_transitions_and_invocations_are_counted_from_the_history(
    backend: Backend, engine: LocalEngine, faults: dict[str, str], transitions: int, invocations: int
) -> None:
    cost = measure(engine, "path", lambda: purchase(**faults), count=2)

    assert (cost.transitions, cost.invocations) == (transitions, invocations)
    assert 0 < cost.task_ms < cost.execution_ms


def test_price_per_thousand_sagas_follows_the_published_rates() -> None:
    cost = PathCost("path", transitions=4, invocations=3, task_ms=20, execution_ms=150)

    lambda_part = 3 * 0.20 / 1e6 + 3 * 0.020 * 0.5 * 0.0000166667
    api_part = 3.50 / 1e6
    assert cost.per_thousand(express=False) == pytest.approx(1000 * (4 * 0.025 / 1000 + lambda_part + api_part))
    express = 1.00 / 1e6 + 0.2 * (64 / 1024) * 0.00001667
    assert cost.per_thousand(express=True) == pytest.approx(1000 * (express + lambda_part + api_part))
