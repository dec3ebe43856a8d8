"""Lambda entry point of the reconciler: resume the sagas left RUNNING or COMPENSATING without a live execution."""

from typing import Any

from chalicelib.entrypoints.scheduled import reconcile


def lambda_handler(event: Any, context: Any) -> dict[str, int]:
    return reconcile(event, context)
