"""Each throttle retrier, against the time its function's reserved slots can be held (docs/design.md §7.3): the
ASL's throttle retries must outlast a burst's drain, computed from template.yaml's timeouts and reserved
concurrency; and the count of throttled attempts the audit log records on the Catch path is the ASL's own."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chalicelib.domain.contracts import THROTTLE_RETRIES
from infra.engine.execution_budget import THROTTLE, state_machine_definitions
from infra.engine.local_engine import ROOT, load_template
from infra.engine.throttle_budget import BURST_SAGAS, throttle_budgets, throttle_retrier, total_wait

DESIGN = (ROOT / "docs" / "design.md").read_text()


def test_a_full_jitter_retrier_counts_its_mean_less_three_deviations_and_a_fixed_one_its_whole_sum() -> None:
    fixed = {"IntervalSeconds": 2, "BackoffRate": 1.0, "MaxAttempts": 3}
    jittered = fixed | {"JitterStrategy": "FULL"}

    assert total_wait(fixed) == (6, 6)
    mean, low = total_wait(jittered)
    assert mean == 3
    assert low == pytest.approx(3 - 3 * (12 / 12) ** 0.5)


def test_every_step_with_a_reserved_concurrency_has_a_throttle_retrier_that_outlasts_a_burst_s_drain() -> None:
    budgets = throttle_budgets()

    assert {b.function for b in budgets} == {"ProcessPaymentFunction"}
    for budget in budgets:
        assert budget.covers, budget


def test_a_smaller_reserved_concurrency_or_a_longer_timeout_makes_the_same_retrier_too_short() -> None:
    template = copy.deepcopy(load_template())
    template["Parameters"]["PaymentConcurrency"]["Default"] = 2
    template["Globals"]["Function"]["Timeout"] = 14

    budgets = throttle_budgets(template)

    assert budgets and not any(b.covers for b in budgets)
    assert all(b.drain_seconds == BURST_SAGAS / 2 * 14 for b in budgets)


@pytest.mark.parametrize("machine", sorted(state_machine_definitions()))
def test_every_forward_step_s_throttle_retrier_makes_the_retries_the_audit_log_counts(machine: str) -> None:
    retriers: list[dict[str, Any]] = [
        retrier
        for state in state_machine_definitions()[machine]["States"].values()
        if (retrier := throttle_retrier(state)) is not None
    ]

    assert retriers
    assert {r["MaxAttempts"] for r in retriers} == {THROTTLE_RETRIES}
    assert all(r["ErrorEquals"] == [THROTTLE] for r in retriers), "a throttle retrier shares its count with no error"


def test_the_design_quotes_the_throttle_budget() -> None:
    for budget in throttle_budgets():
        assert f"{budget.drain_seconds:,.0f} s" in DESIGN
        assert f"{budget.low_wait_seconds:,.0f} s" in DESIGN
