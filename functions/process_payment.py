"""Lambda entry point of `process_payment`. Purchase step 2: charge the card."""

from typing import Any

from chalicelib.domain import purchase
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.process_payment, event, context)
