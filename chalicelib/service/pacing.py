"""Pacing a reconciler pass (docs/design.md §7.2): its time budget, and a token bucket for each throttled Step
Functions API it calls, so that a pass draining a backlog stays within the account's quotas and ends in time.

Everything reads one clock, so that a test can run a pass on a clock of its own (sleeping advances it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.service.executions import StepFunctions


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class BudgetSpent(RuntimeError):
    """The pass's time is up: what it has not done is the next pass's work."""


@dataclass(frozen=True)
class Budget:
    clock: Clock
    deadline: float

    def within(self, seconds: float) -> Budget:
        """This budget, ending `seconds` from now at the latest."""
        return Budget(self.clock, min(self.deadline, self.clock.monotonic() + seconds))

    def spent(self) -> bool:
        return self.clock.monotonic() >= self.deadline


class TokenBucket:
    """Step Functions' own throttling scheme, kept on our side of the call: a bucket of one second's worth of
    tokens, refilled at `rate` a second, one token per call. A call waits for its token instead of being
    throttled."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate, self.clock = rate, clock
        self.size = max(1.0, rate)
        self.tokens, self.filled_at = self.size, clock.monotonic()
        self.lock = threading.Lock()

    def take(self, budget: Budget) -> None:
        """Wait for a token (callers wait in turn); BudgetSpent, without waiting, if it would come after the
        budget's end."""
        with self.lock:
            self._refill()
            wait = max(0.0, (1 - self.tokens) / self.rate)
            if self.clock.monotonic() + wait > budget.deadline:
                raise BudgetSpent(f"the next call may come in {wait:.2f} s, after the pass's time is up")
            if wait:
                self.clock.sleep(wait)
                self._refill()
            self.tokens -= 1

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.filled_at) * self.rate)
        self.filled_at = now


def paced(sfn: StepFunctions, starts: TokenBucket, describes: TokenBucket, budget: Budget) -> StepFunctions:
    """`sfn`, each StartExecution waiting for a token of `starts`, each DescribeExecution for one of `describes`."""

    def start(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        starts.take(budget)
        return sfn.start(saga_type, name, execution_input)

    def status(execution_arn: str) -> str | None:
        describes.take(budget)
        return sfn.status(execution_arn)

    return StepFunctions(start=start, status=status, arn_for=sfn.arn_for)
