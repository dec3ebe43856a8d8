"""The reconciler's Lambda (docs/design.md §7.2): a schedule invokes it, and each invocation is one pass."""

from __future__ import annotations

from typing import Any

from chalicelib.observability.telemetry import traced
from chalicelib.service import reconciler
from chalicelib.service.executions import boto3_step_functions
from chalicelib.settings import get_settings


def reconcile(event: Any, context: Any) -> dict[str, int]:
    """One pass over the sagas left without a live execution; how many it found stuck and how many it resumed."""
    with traced("## reconcile"):
        done = reconciler.reconcile(boto3_step_functions(), get_settings().reconciler_grace_seconds)
    return {"found": len(done.found), "resumed": len(done.resumed)}
