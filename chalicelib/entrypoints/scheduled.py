"""The scheduled Lambdas: the reconciler (docs/design.md §7.2), each invocation one pass; and the bulk retries'
worker (§3.1), each invocation working through the operators' open bulk retries until they are done or its time is
nearly up."""

from __future__ import annotations

from typing import Any

from chalicelib.observability.telemetry import traced
from chalicelib.service import bulk_retry, reconciler
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


def work_bulk_retries(event: Any, context: Any) -> dict[str, int]:
    """Retry the sagas of the open bulk retries, within BULK_RETRY_START_RATE, until none is left or the invocation's
    time is nearly up (the next invocation goes on); how many sagas it took up."""
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    with traced("## bulk retries"):
        taken = bulk_retry.work(boto3_step_functions(), budget)
    return {"taken": taken}
