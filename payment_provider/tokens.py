"""The provider's test cards: what a payment token does when it is charged."""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Hashable


class TokenBehaviour(enum.Enum):
    APPROVES = "tok_visa"
    DECLINES = "tok_declined"
    FLAKY = "tok_flaky"
    """503 on the first request for an idempotency key, approves on the next one."""
    LOSES_RESPONSE = "tok_lost_response"
    """Captures, but the caller never gets the answer (it times out: outcome unknown)."""
    SLOW_CAPTURE = "tok_slow_capture"
    """Approves, but the capture commits only after the provider's slow-capture hold: the caller times out, and the
    same Idempotency-Key answers 409 `idempotency_key_in_use` until it has committed."""
    UNKNOWN = ""


APPROVES, DECLINES, FLAKY, LOSES_RESPONSE, SLOW_CAPTURE = (
    TokenBehaviour.APPROVES.value,
    TokenBehaviour.DECLINES.value,
    TokenBehaviour.FLAKY.value,
    TokenBehaviour.LOSES_RESPONSE.value,
    TokenBehaviour.SLOW_CAPTURE.value,
)
"""The test cards' tokens, for the tools that make purchases."""

_KNOWN = re.compile(
    "(" + "|".join(re.escape(b.value) for b in TokenBehaviour if b.value) + ")(?:_[A-Za-z0-9]{1,40})?",
)


def behaviour_of(token: str) -> TokenBehaviour:
    """The behaviour of `token`: one of the test cards, optionally with a `_<suffix>` (1 to 40 letters or digits)."""
    match = _KNOWN.fullmatch(token)
    return TokenBehaviour(match.group(1)) if match else TokenBehaviour.UNKNOWN


class FirstAttempts:
    """Remembers which idempotency keys a flaky token was already tried with.

    Kept in memory on purpose: the 503 stores nothing in the ledger, and a provider restart only makes a
    flaky card fail once more, which is still what a flaky card does.
    """

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def is_first(self, attempt_key: Hashable) -> bool:
        """True the first time `attempt_key` is seen, False ever after."""
        with self._lock:
            if attempt_key in self._seen:
                return False
            self._seen.add(attempt_key)
            return True
