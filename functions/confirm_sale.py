"""Lambda entry point of `confirm_sale`. Purchase step 3: confirm the order."""

from typing import Any

from chalicelib.domain import purchase
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.confirm_sale, event, context)
