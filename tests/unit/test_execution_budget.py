"""The worst case of each saga's execution, from its definition's Retry policies and TimeoutSeconds, against
Express's five minutes (docs/design.md §7.3): the template offers EXPRESS only if every saga fits."""

from __future__ import annotations

from typing import Any

import pytest

from infra.engine.execution_budget import (
    EXPRESS_LIMIT_SECONDS,
    longest_path,
    retry_waits,
    state_machine_definitions,
    task_budget,
    worst_case_seconds,
)
from infra.engine.local_engine import ROOT, load_template

DEFINITIONS = state_machine_definitions()
RESOURCES: dict[str, Any] = load_template()["Resources"]
DESIGN = (ROOT / "docs" / "design.md").read_text()


def test_a_retrier_waits_its_interval_times_the_backoff_capped_and_full_jitter_never_waits_longer() -> None:
    retrier = {
        "IntervalSeconds": 1,
        "BackoffRate": 2.0,
        "MaxAttempts": 6,
        "MaxDelaySeconds": 10,
        "JitterStrategy": "FULL",
    }

    assert retry_waits(retrier) == [1, 2, 4, 8, 10, 10]
    assert retry_waits({"ErrorEquals": ["States.ALL"]}) == [1, 2, 4]  # the ASL's defaults


def test_a_task_is_attempted_once_plus_each_retrier_s_attempts_each_for_its_whole_timeout() -> None:
    state = {
        "Type": "Task",
        "TimeoutSeconds": 10,
        "Retry": [
            {"ErrorEquals": ["Transient"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 1.0},
            {"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1, "MaxAttempts": 3},
        ],
    }

    budget = task_budget("T", state)
    throttled = task_budget("T", state, throttles_instant=True)

    assert (budget.attempts, budget.running_seconds, budget.waiting_seconds) == (6, 60, 2 + 2 + 1 + 2 + 4)
    assert throttled.running_seconds == 30


def test_the_worst_case_follows_the_longest_path_through_next_and_catch() -> None:
    task = {"Type": "Task", "TimeoutSeconds": 5}
    definition = {
        "StartAt": "A",
        "States": {
            "A": task | {"Next": "B", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]},
            "B": task | {"Next": "Done", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}]},
            "C": task | {"Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }

    assert [t.state for t in longest_path(definition)] == ["A", "B", "C"]
    assert worst_case_seconds(definition) == 15


@pytest.mark.parametrize("machine", sorted(DEFINITIONS))
def test_every_task_has_a_timeout(machine: str) -> None:
    tasks = {name: state for name, state in DEFINITIONS[machine]["States"].items() if state["Type"] == "Task"}
    assert tasks and all("TimeoutSeconds" in state for state in tasks.values())


@pytest.mark.parametrize("machine", sorted(DEFINITIONS))
def test_express_is_offered_only_if_the_saga_fits_in_its_five_minutes(machine: str) -> None:
    worst = worst_case_seconds(DEFINITIONS[machine])
    offered = RESOURCES[machine]["Properties"]["Type"] != "STANDARD"

    if offered:
        assert worst <= EXPRESS_LIMIT_SECONDS
    else:
        assert worst_case_seconds(DEFINITIONS[machine], throttles_instant=True) > EXPRESS_LIMIT_SECONDS
        assert RESOURCES[machine]["Properties"]["Type"] == "STANDARD"


@pytest.mark.parametrize("machine", sorted(DEFINITIONS))
def test_the_design_quotes_the_worst_cases_it_decided_on(machine: str) -> None:
    for throttles_instant in (False, True):
        seconds = worst_case_seconds(DEFINITIONS[machine], throttles_instant=throttles_instant)
        assert f"{seconds:,.0f} s" in DESIGN, (machine, throttles_instant)
