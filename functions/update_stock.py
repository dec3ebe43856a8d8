"""Lambda entry point of `update_stock`. Return step 3: put the goods back on hand."""

from typing import Any

from chalicelib.domain import returns
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(returns.update_stock, event, context)
