"""Lambda entry point of `issue_refund`. Return step 2: refund the returned units."""

from typing import Any

from chalicelib.domain import returns
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(returns.issue_refund, event, context)
