"""Lambda entry point of `cancel_refund`. Return compensation: cancel the refund and close the request."""

from typing import Any

from chalicelib.domain import returns
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(returns.cancel_refund, event, context)
