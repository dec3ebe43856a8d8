"""Lambda entry point of the bulk retries' worker: retry the sagas of the operations `POST /sagas/retry` recorded."""

from typing import Any

from chalicelib.entrypoints.scheduled import work_bulk_retries


def lambda_handler(event: Any, context: Any) -> dict[str, int]:
    return work_bulk_retries(event, context)
