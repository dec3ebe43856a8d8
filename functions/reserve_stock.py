"""Lambda entry point of `reserve_stock`. Purchase step 1: hold the units."""

from typing import Any

from chalicelib.domain import purchase
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.reserve_stock, event, context)
