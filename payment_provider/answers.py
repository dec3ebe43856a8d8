"""What the provider answers: an HTTP status and a JSON body, whatever carries it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    storable: bool = True
    """False for answers an idempotency key must not remember (a transient 503: the retry must run again)."""
    response_lost: bool = field(default=False, compare=False)
    """The effect is committed but the caller must not get this answer (a `tok_lost_response` charge)."""
    headers: dict[str, str] = field(default_factory=dict, compare=False)
    """Extra HTTP headers (`Allow`, `WWW-Authenticate`); an idempotency record does not keep them."""


def error_answer(status: int, code: str, message: str, param: str | None = None, storable: bool = True) -> Answer:
    """An error answer `{"error": code, "message": message}`, naming the offending parameter when there is one."""
    body: dict[str, Any] = {"error": code, "message": message}
    if param is not None:
        body["param"] = param
    return Answer(status, body, storable=storable)


def unavailable(message: str) -> Answer:
    """A transient 503 that stores nothing, so a retry with the same idempotency key runs again."""
    return error_answer(503, "provider_unavailable", message, storable=False)
