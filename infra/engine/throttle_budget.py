"""Whether each throttle retrier waits long enough for a slot of its function to free (docs/design.md §7.3).

Lambda refuses an invocation over the function's reserved concurrency (`Lambda.TooManyRequestsException`); the
Task's throttle retrier then waits and tries again. The worst case it must outlast: every reserved slot is held by
an attempt that runs to its timeout (a hung provider, a `timeout` fault), so a slot frees only after the timeout,
and a burst of sagas waiting for that step drains `reserved` at a time, one timeout per round:

    drain = ceil(BURST_SAGAS / reserved concurrency) * min(function Timeout, Task TimeoutSeconds)

With `JitterStrategy: FULL` each wait is uniform below its capped value, so a retrier's total wait is random: its
mean is half the capped sum, its variance the sum of each capped wait squared over 12. The retrier covers the
drain when even its low total (the mean less three standard deviations, which a saga's waits fall below about
once in a thousand) is at least the drain. Without jitter the total is the capped sum itself.

    python -m infra.engine.throttle_budget      each throttle retrier against its function's drain time
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from infra.engine.execution_budget import (
    ASL_DEFAULTS,
    DEFAULT_TASK_TIMEOUT,
    THROTTLE,
    retry_waits,
    state_machine_definitions,
)
from infra.engine.local_engine import load_template
from infra.engine.local_functions import function_settings, resolve_parameter_refs

BURST_SAGAS = 100
"""The burst promised to be absorbed: this many sagas reach a reserved-concurrency step at once, a second of the
API's steady rate (ApiThrottleRate, 100 requests a second), while every slot is held to its timeout."""
LOW_SIGMAS = 3
FUNCTION_REF = "FunctionArn}"


@dataclass(frozen=True)
class ThrottleBudget:
    state: str
    function: str
    reserved: int
    slot_seconds: float
    """The longest an attempt holds its slot: the function's timeout, or the Task's if that is shorter."""
    retries: int
    mean_wait_seconds: float
    low_wait_seconds: float

    @property
    def drain_seconds(self) -> float:
        return math.ceil(BURST_SAGAS / self.reserved) * self.slot_seconds

    @property
    def covers(self) -> bool:
        return self.low_wait_seconds >= self.drain_seconds


def total_wait(retrier: dict[str, Any]) -> tuple[float, float]:
    """The retrier's mean total wait over all its retries, and its low total (mean less LOW_SIGMAS deviations)."""
    waits = retry_waits(retrier)
    if retrier.get("JitterStrategy") != "FULL":
        return sum(waits), sum(waits)
    mean = sum(waits) / 2
    deviation = math.sqrt(sum(wait**2 for wait in waits) / 12)
    return mean, mean - LOW_SIGMAS * deviation


def throttle_retrier(state: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in state.get("Retry", []) if THROTTLE in r["ErrorEquals"]), None)


def task_function(state: dict[str, Any], substitutions: dict[str, Any]) -> str:
    """The logical id of the function a Task invokes, through its `${…FunctionArn}` substitution."""
    placeholder = str(state["Parameters"]["FunctionName"]).strip("${}")
    value = substitutions[placeholder]
    return str(value["Ref"]).split(".")[0] if isinstance(value, dict) else str(value)


def throttle_budgets(template: dict[str, Any] | None = None) -> list[ThrottleBudget]:
    """Every Task of every state machine whose function has a reserved concurrency, with its throttle retrier."""
    template = template or load_template()
    definitions = state_machine_definitions()
    budgets = []
    for machine, definition in definitions.items():
        substitutions = template["Resources"][machine]["Properties"].get("DefinitionSubstitutions", {})
        for name, state in definition["States"].items():
            if state["Type"] != "Task":
                continue
            function = task_function(state, substitutions)
            settings = function_settings(template, function)
            if "ReservedConcurrentExecutions" not in settings:
                continue
            parameters = template.get("Parameters", {})
            reserved = int(resolve_parameter_refs(settings["ReservedConcurrentExecutions"], parameters) or 0)
            timeout = float(resolve_parameter_refs(settings.get("Timeout", 3), parameters) or 3)
            retrier = throttle_retrier(state) or {"MaxAttempts": 0}
            mean, low = total_wait(retrier)
            budgets.append(
                ThrottleBudget(
                    state=name,
                    function=function,
                    reserved=reserved,
                    slot_seconds=min(timeout, float(state.get("TimeoutSeconds", DEFAULT_TASK_TIMEOUT))),
                    retries=int((ASL_DEFAULTS | retrier)["MaxAttempts"]),
                    mean_wait_seconds=mean,
                    low_wait_seconds=low,
                )
            )
    return budgets


def main() -> int:
    uncovered = 0
    for budget in throttle_budgets():
        uncovered += not budget.covers
        print(
            f"{budget.state} ({budget.function}): {budget.reserved} reserved x {budget.slot_seconds:g} s held; "
            f"a burst of {BURST_SAGAS} drains in {budget.drain_seconds:g} s; {budget.retries} throttle retries wait "
            f"{budget.mean_wait_seconds:,.0f} s on average, at least {budget.low_wait_seconds:,.0f} s: "
            f"{'covered' if budget.covers else 'TOO SHORT'}"
        )
    return 1 if uncovered else 0


if __name__ == "__main__":
    sys.exit(main())
