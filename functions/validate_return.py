"""Lambda entry point of `validate_return`. Return step 1: check the order allows this return."""

from typing import Any

from chalicelib.domain import returns
from chalicelib.entrypoints.step_lambda import handle


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(returns.validate_return, event, context)
