"""Lambda entry point of `compensation_failed`: a compensation gave up; the saga ends FAILED, naming it."""

from typing import Any

from chalicelib.entrypoints.step_lambda import handle_compensation_failed


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle_compensation_failed(event, context)
