"""Lambda entry point of `release_stock`. Purchase compensation: give held or sold units back."""

from typing import Any

from chalicelib.domain import purchase
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(purchase.release_stock, event, context)
