"""Lambda entry point of `refund_payment`. Purchase compensation: refund the captured charge."""

from typing import Any

from chalicelib import purchase
from chalicelib.step_handler import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.refund_payment, event, context)
