"""Errors a step raises. A class name is the error name the state machines match in ErrorEquals."""

from __future__ import annotations

import re
from typing import ClassVar

MAX_MESSAGE = 500
SCRUBBED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"\b[\w-]+(?:\.[\w-]+)*:\d{2,5}\b"), "<address>"),
    (re.compile(r"\bhost(?:name)?\s*[=:]?\s*[\"']?[\w.-]+[\"']?", re.IGNORECASE), "host <host>"),
    (re.compile(r"\bport\s*[=:]?\s*\d+", re.IGNORECASE), "port <port>"),
    (re.compile(r"\b(?:user(?:name)?|password)\s*[=:]\s*\S+", re.IGNORECASE), "<credential>"),
    (re.compile(r"\bDETAIL:.*", re.IGNORECASE), ""),
)
"""Whatever could name where our data lives or what it holds: connection URLs (with their passwords), addresses,
host and port names, credentials, and the values PostgreSQL quotes in DETAIL."""


class StepError(Exception):
    """A step failed. `retryable` says whether the state machine retries it."""

    retryable: ClassVar[bool] = False


class OutOfStock(StepError):
    """Fewer units available than asked for."""


class UnknownProduct(StepError):
    """No product has this sku."""


class PaymentDeclined(StepError):
    """The payment provider refused the charge."""


class PaymentProviderUnavailable(StepError):
    """The payment provider did not answer; trying again later may work."""

    retryable = True


class PaymentProviderRefused(StepError):
    """The payment provider refused the request itself (a bad key, an over-refund...): retrying cannot help."""


class RefundSettled(StepError):
    """The provider settled the refund before it could be cancelled: an operator must recover the money."""


class PaymentOutcomeUnknown(StepError):
    """The provider has forgotten the idempotency key of a request whose outcome we never learned, and nothing it
    keeps consistent tells what that request did: an operator must look, rather than the saga guess."""


class ReturnRejected(StepError):
    """The return breaks a rule: unknown or unconfirmed order, too many units, window closed."""


class InjectedFault(StepError):
    """A permanent failure asked for by the request's `faults`."""


class TransientFault(StepError):
    """A retryable failure asked for by the request's `faults` (`transient:N`)."""

    retryable = True


class DatabaseUnavailable(StepError):
    """The database could not serve the step now: unreachable, its session ended (a failover, a restart), no
    connection left, read-only (a demoted primary), or the statement cut short; the state machine retries."""

    retryable = True


class InvalidStepEvent(StepError):
    """The event given to a step handler is malformed."""


class UnknownSaga(StepError):
    """The event names a saga that has no record."""


REJECTIONS: tuple[type[StepError], ...] = (OutOfStock, UnknownProduct, ReturnRejected)
"""Business refusals of a saga's first step: the saga ends REJECTED with nothing to undo."""


class StepOutOfOrder(StepError):
    """A step ran before the step it depends on had succeeded."""


class SagaNotRunning(StepError):
    """A forward step was delivered for a saga that is compensating or already ended without completing:
    it must not act. The state machine's Catch then runs the compensations, which undo what took effect."""


class SagaCancelled(SagaNotRunning):
    """An operator cancelled the saga (POST /sagas/{id}/cancel): no forward step acts after the cancel is recorded.
    The state machine's Catch runs the compensations, which undo what took effect; the saga ends CANCELLED."""


class ConcurrentUpdate(StepError):
    """The step's write lost a race with a concurrent one (a unique key, a version, a deadlock, a serialization
    failure, a lock it waited for too long); run again, it goes through or finds the winner's result."""

    retryable = True


DECLARED: tuple[type[StepError], ...] = (
    OutOfStock,
    UnknownProduct,
    ReturnRejected,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentProviderRefused,
    RefundSettled,
    PaymentOutcomeUnknown,
    DatabaseUnavailable,
    ConcurrentUpdate,
    SagaNotRunning,
    SagaCancelled,
    InjectedFault,
    TransientFault,
)
"""The errors a step raises by design, whatever the state machine's definition: business refusals, a dependency
out or racing, a late delivery, an operator's cancel, and the faults a request asks for (`fail`, `transient:N`).
Left out on purpose: InvalidStepEvent, UnknownSaga and StepOutOfOrder, which say that the definition sent a bad
event or ran a step out of order (docs/design.md §7.3, the canary)."""


def safe_message(error: BaseException) -> str:
    """What may be recorded of an error (the audit log, log lines, the saga's result): its first line, without
    connection strings, hosts, credentials or SQL and its parameters (SQLAlchemy puts those on later lines)."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    for pattern, replacement in SCRUBBED:
        first = pattern.sub(replacement, first)
    return first[:MAX_MESSAGE]
