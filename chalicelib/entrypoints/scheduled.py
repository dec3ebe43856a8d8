"""The reconciler's Lambda (docs/design.md §7.2): a schedule invokes it, and each invocation is one pass."""

from __future__ import annotations

from typing import Any

from chalicelib.observability.telemetry import traced
from chalicelib.service import reconciler
from chalicelib.service.executions import boto3_step_functions
from chalicelib.settings import get_settings

MARGIN_SECONDS = 30.0
"""Left of the invocation when the pass stops taking up sagas: room for the saga in hand (a Step Functions call
retried by boto3 takes up to about 25 s when the service does not answer), the leases given back and the metrics
emitted, before Lambda stops the function at its timeout."""


def reconcile(event: Any, context: Any) -> dict[str, int]:
    """One pass over the sagas left without a live execution, until none is left or the invocation's time is nearly
    up; how many it found stuck and how many it resumed."""
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    with traced("## reconcile"):
        done = reconciler.reconcile(boto3_step_functions(), get_settings().reconciler_grace_seconds, budget)
    return {"found": len(done.found), "resumed": len(done.resumed)}
