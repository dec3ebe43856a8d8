"""Lambda entry point of `reserve_stock`. Purchase step 1: hold the units."""

from typing import Any

from chalicelib import purchase
from chalicelib.step_handler import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.reserve_stock, event, context)
