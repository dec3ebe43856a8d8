"""The longest a saga's execution can take, computed from its definition (docs/design.md §7.3).

Each Task attempt may run until its `TimeoutSeconds`; each retrier keeps its own count, so a Task is attempted
at most once plus every retrier's `MaxAttempts`; and before its n-th retry a retrier waits
`IntervalSeconds * BackoffRate^(n-1)`, capped at `MaxDelaySeconds`. With `JitterStrategy: FULL` the wait is
random below that, so the worst case is the capped value itself. The execution's worst case is the longest path
from `StartAt` through `Next` and every `Catch`, Task by Task.

    python -m infra.engine.execution_budget      the worst case of each state machine, Task by Task
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from infra.engine.local_engine import ROOT, load_template

EXPRESS_LIMIT_SECONDS = 300
"""An Express execution ends after five minutes, whatever it is doing."""
THROTTLE = "Lambda.TooManyRequestsException"
"""Lambda refuses the invocation before the function runs: such an attempt takes no time."""
ASL_DEFAULTS = {"IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 3}
DEFAULT_TASK_TIMEOUT = 99_999_999
"""The ASL's TimeoutSeconds when a Task names none."""


@dataclass(frozen=True)
class TaskBudget:
    state: str
    attempts: int
    running_seconds: float
    """Every attempt for its whole TimeoutSeconds (with `throttles_instant`, those a throttle retried for none)."""
    waiting_seconds: float

    @property
    def seconds(self) -> float:
        return self.running_seconds + self.waiting_seconds


def retry_waits(retrier: dict[str, Any]) -> list[float]:
    """The longest wait before each of the retrier's retries."""
    settings = ASL_DEFAULTS | retrier
    interval, rate, cap = settings["IntervalSeconds"], settings["BackoffRate"], settings.get("MaxDelaySeconds")
    waits = [interval * rate**n for n in range(int(settings["MaxAttempts"]))]
    return [min(wait, cap) if cap is not None else wait for wait in waits]


def task_budget(name: str, state: dict[str, Any], throttles_instant: bool = False) -> TaskBudget:
    timeout = float(state.get("TimeoutSeconds", DEFAULT_TASK_TIMEOUT))
    retriers = state.get("Retry", [])
    attempts = 1 + sum(int((ASL_DEFAULTS | retrier)["MaxAttempts"]) for retrier in retriers)
    instant = sum(
        int((ASL_DEFAULTS | retrier)["MaxAttempts"])
        for retrier in retriers
        if throttles_instant and set(retrier["ErrorEquals"]) == {THROTTLE}
    )
    waits = sum(sum(retry_waits(retrier)) for retrier in retriers)
    return TaskBudget(name, attempts, (attempts - instant) * timeout, waits)


def longest_path(definition: dict[str, Any], throttles_instant: bool = False) -> list[TaskBudget]:
    """The Tasks of the path that can take longest, in order."""
    states: dict[str, Any] = definition["States"]

    @cache
    def longest_from(name: str) -> tuple[float, tuple[TaskBudget, ...]]:
        state = states[name]
        budget = task_budget(name, state, throttles_instant) if state["Type"] == "Task" else None
        following = [state["Next"]] if "Next" in state else []
        following += [catcher["Next"] for catcher in state.get("Catch", [])]
        best: tuple[float, tuple[TaskBudget, ...]] = (0.0, ())
        for successor in following:
            candidate = longest_from(successor)
            if candidate[0] > best[0]:
                best = candidate
        head = (budget,) if budget else ()
        return (budget.seconds if budget else 0.0) + best[0], head + best[1]

    return list(longest_from(definition["StartAt"])[1])


def worst_case_seconds(definition: dict[str, Any], throttles_instant: bool = False) -> float:
    return sum(task.seconds for task in longest_path(definition, throttles_instant))


def state_machine_definitions(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Each state machine of template.yaml (by logical id) with its ASL definition."""
    return {
        logical_id: json.loads((root / resource["Properties"]["DefinitionUri"]).read_text())
        for logical_id, resource in load_template(root / "template.yaml")["Resources"].items()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    }


def main() -> int:
    for machine, definition in state_machine_definitions().items():
        print(f"{machine}: at most {worst_case_seconds(definition):,.0f} s along")
        for task in longest_path(definition):
            print(
                f"  {task.state:<20} {task.attempts:>2} attempts  {task.running_seconds:>5,.0f} s running"
                f"  {task.waiting_seconds:>4,.0f} s waiting  {task.seconds:>5,.0f} s"
            )
        quick = worst_case_seconds(definition, throttles_instant=True)
        print(f"  counting throttled attempts as instant: {quick:,.0f} s; Express allows {EXPRESS_LIMIT_SECONDS} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
