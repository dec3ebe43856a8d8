"""Pydantic models of what crosses a boundary: saga requests, step events, saga statuses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from chalicelib.domain.errors import DECLARED

SagaType = Literal["purchase", "return"]
FaultKind = Literal["fail", "transient", "timeout", "crash"]

PURCHASE_STEPS = ("reserve_stock", "process_payment", "confirm_sale", "release_stock", "refund_payment")
RETURN_STEPS = ("validate_return", "issue_refund", "update_stock", "cancel_refund")
COMPENSATIONS = frozenset({"release_stock", "refund_payment", "cancel_refund"})
STEPS_BY_SAGA: dict[str, tuple[str, ...]] = {"purchase": PURCHASE_STEPS, "return": RETURN_STEPS}

MAX_QUANTITY = 1_000
THROTTLED = "Lambda.TooManyRequestsException"
"""What Step Functions names an invocation that Lambda refused over the function's concurrency: it never ran."""
THROTTLE_RETRIES = 34
"""The MaxAttempts of every forward Task's retrier for THROTTLED, its only error (statemachines/*.asl.json; a test
holds them equal): when a Catch caught THROTTLED, that retrier ran out, so THROTTLE_RETRIES + 1 attempts were
throttled (docs/design.md §7.3)."""
LAMBDA_SERVICE_ERRORS = frozenset(
    {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.ClientExecutionTimeoutException",
    }
)
"""What Step Functions names Lambda's own transient failures to invoke a function (AWS's "Handle Lambda service
exceptions" page): the service's, not our code's nor our definition's."""
IDEMPOTENCY_IN_PROGRESS = "IdempotencyAlreadyInProgressError"
"""A duplicate delivery of an attempt still running (chalicelib/adapters/idempotency.py): retried."""
DECLARED_ERRORS = frozenset(
    {*(error.__name__ for error in DECLARED), THROTTLED, IDEMPOTENCY_IN_PROGRESS, *LAMBDA_SERVICE_ERRORS}
)
"""The error names a Catch may catch from a correct definition running correct code. Any other (a crash, a timeout,
an unexpected exception, an event the step refused, a state the definition names wrongly) is a fault of the
definition or code that ran: the canary deploy rolls back on it (docs/design.md §7.3)."""
FAULT_PATTERN = re.compile(r"^(?P<kind>fail|transient|timeout|crash)(?::(?P<times>[1-9]))?$")


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RESOLVED = "RESOLVED"


NEXT_STATUSES: dict[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset({SagaStatus.COMPLETED, SagaStatus.REJECTED, SagaStatus.COMPENSATING}),
    # A step whose outcome was lost (say, a timeout after its commit) is compensated even if it had completed.
    SagaStatus.COMPLETED: frozenset({SagaStatus.COMPENSATING}),
    # A cancelled saga's compensations end it CANCELLED rather than COMPENSATED.
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATED, SagaStatus.CANCELLED, SagaStatus.FAILED}),
    # An operator retries a FAILED saga's compensation once its cause is fixed, or resolves it (fixed by hand).
    SagaStatus.FAILED: frozenset({SagaStatus.COMPENSATING, SagaStatus.RESOLVED}),
    SagaStatus.REJECTED: frozenset(),
    SagaStatus.COMPENSATED: frozenset(),
    SagaStatus.CANCELLED: frozenset(),
    SagaStatus.RESOLVED: frozenset(),
}
"""The status moves a saga may make; any other move (a repeated step's) leaves the status as it is. An operator's
cancel is the move RUNNING -> COMPENSATING (docs/design.md §2.5)."""
UNDONE = frozenset({SagaStatus.COMPENSATED, SagaStatus.CANCELLED, SagaStatus.REJECTED})
"""The outcomes that leave no effect behind (docs/design.md §4). A RESOLVED saga, like a FAILED one, may have: an
operator settled it by hand."""


class Action(StrEnum):
    EXECUTE = "execute"
    COMPENSATE = "compensate"


class AttemptStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


def step_of_state(state: str) -> str:
    """A state's step name: its snake_case form (ReserveStock -> reserve_stock), as docs/design.md §2 fixes."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in state).lstrip("_")


def state_of_step(step: str) -> str:
    """A step's state name (reserve_stock -> ReserveStock)."""
    return "".join(part.capitalize() for part in step.split("_"))


def saga_type_of(step: str) -> SagaType | None:
    """The saga a step belongs to; None for a task both sagas share (compensation_failed)."""
    if step in PURCHASE_STEPS:
        return "purchase"
    return "return" if step in RETURN_STEPS else None


def action_of(step: str) -> Action:
    return Action.COMPENSATE if step in COMPENSATIONS else Action.EXECUTE


IDENTIFIER_PATTERN = r"[A-Za-z0-9_.:@-]{1,64}"
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=rf"^{IDENTIFIER_PATTERN}$")]
FreeText = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]
"""Any text but control characters (tab and newlines allowed): PostgreSQL cannot store a NUL."""
FaultSpec = Annotated[
    str, StringConstraints(pattern=r"^(fail|transient:[1-9]|timeout|timeout:[1-9]|crash|crash:[1-9])$")
]
Quantity = Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY)]


class SagaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    faults: dict[str, FaultSpec] = Field(default_factory=dict)

    @classmethod
    def saga_type(cls) -> SagaType:
        raise NotImplementedError

    @field_validator("faults")
    @classmethod
    def _faults_name_steps_of_this_saga(cls, faults: dict[str, str]) -> dict[str, str]:
        steps = STEPS_BY_SAGA[cls.saga_type()]
        unknown = sorted(set(faults) - set(steps))
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; steps of this saga are {list(steps)}")
        return faults


class PurchaseRequest(SagaRequest):
    customer_id: Identifier
    sku: Identifier
    quantity: Quantity
    payment_token: Identifier

    @classmethod
    def saga_type(cls) -> SagaType:
        return "purchase"


class ReturnRequest(SagaRequest):
    customer_id: Identifier
    """The customer returning the order: only the customer who bought an order may return it."""
    order_id: Identifier
    quantity: Quantity
    reason: FreeText

    @classmethod
    def saga_type(cls) -> SagaType:
        return "return"


REQUEST_MODELS: dict[str, type[SagaRequest]] = {"purchase": PurchaseRequest, "return": ReturnRequest}


class TaskError(BaseModel):
    """What a Catch records of a Task's last failure: Step Functions' error name and its cause."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    Error: Annotated[str, StringConstraints(max_length=256)]
    Cause: Annotated[str, StringConstraints(max_length=32_768)] = ""

    @property
    def is_fault(self) -> bool:
        """Whether no correct definition running correct code meets this error (DECLARED_ERRORS)."""
        return self.Error not in DECLARED_ERRORS


StepName = Literal[
    "reserve_stock",
    "process_payment",
    "confirm_sale",
    "release_stock",
    "refund_payment",
    "validate_return",
    "issue_refund",
    "update_stock",
    "cancel_refund",
]


class StepEvent(BaseModel):
    """What every step handler receives from its Task state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    saga_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    execution: Identifier | None = None
    """The name of the execution the Task runs in: a retried or resumed saga's new execution runs its steps anew
    (each attempt then audited), rather than being answered as a repeat of the earlier execution's attempts."""
    retry_count: Annotated[int, Field(strict=True, ge=0, le=100)] = 0
    correlation_id: Identifier | None = None
    """The id of the request that started (or retried) the saga, carried into every step's logs and traces."""
    failures: dict[StepName, TaskError] = Field(default_factory=dict)
    """The steps whose Catch led here, with their last error: compensations and the FAILED path receive it."""
    definition: Identifier | None = None
    """The digest of the state machine definition the execution runs (`${DefinitionDigest}`, infra/deploy/package.py):
    a fault a Catch caught is counted against it. None in events of executions started before it was passed."""

    @property
    def attempt(self) -> int:
        return self.retry_count + 1


@dataclass(frozen=True)
class Fault:
    """A fault asked for at one step: `fail`, `transient:N`, `timeout[:N]` or `crash[:N]` (docs/design.md §2)."""

    kind: FaultKind
    times: int | None
    """How many attempts it hits (the first N); None: every attempt."""

    def hits(self, attempt: int) -> bool:
        return self.times is None or attempt <= self.times


def fault_for(faults: dict[str, str], step: str) -> Fault | None:
    """The fault asked for at `step`, if any."""
    spec = faults.get(step)
    if spec is None:
        return None
    match = FAULT_PATTERN.fullmatch(spec)
    times_required = {"fail": False, "transient": True}.get(match["kind"]) if match else None
    if match is None or (times_required is not None and times_required != (match["times"] is not None)):
        raise ValueError(f"bad fault spec {spec!r}")
    return Fault(cast(FaultKind, match["kind"]), int(match["times"]) if match["times"] else None)
