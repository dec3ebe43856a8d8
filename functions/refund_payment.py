"""Lambda entry point of `refund_payment`. Purchase compensation: refund the captured charge."""

from typing import Any

from chalicelib.domain import purchase
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.refund_payment, event, context)
