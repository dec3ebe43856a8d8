"""Cold-start reference: the smallest handler there is."""

from typing import Any


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return {"hello": "world"}
