"""Pydantic models of what crosses a boundary: saga requests, step events, saga statuses."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

SagaType = Literal["purchase", "return"]

PURCHASE_STEPS = ("reserve_stock", "process_payment", "confirm_sale", "release_stock", "refund_payment")
RETURN_STEPS = ("validate_return", "issue_refund", "update_stock", "cancel_refund")
COMPENSATIONS = frozenset({"release_stock", "refund_payment", "cancel_refund"})
STEPS_BY_SAGA: dict[str, tuple[str, ...]] = {"purchase": PURCHASE_STEPS, "return": RETURN_STEPS}

MAX_QUANTITY = 1_000
FAULT_PATTERN = re.compile(r"^(fail|transient:([1-9]))$")


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


NEXT_STATUSES: dict[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset({SagaStatus.COMPLETED, SagaStatus.REJECTED, SagaStatus.COMPENSATING}),
    # A step whose outcome was lost (say, a timeout after its commit) is compensated even if it had completed.
    SagaStatus.COMPLETED: frozenset({SagaStatus.COMPENSATING}),
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATED, SagaStatus.FAILED}),
    # An operator retries a FAILED saga's compensation once its cause is fixed.
    SagaStatus.FAILED: frozenset({SagaStatus.COMPENSATING}),
    SagaStatus.REJECTED: frozenset(),
    SagaStatus.COMPENSATED: frozenset(),
}
"""The status moves a saga may make; any other move (a repeated step's) leaves the status as it is."""


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


def saga_type_of(step: str) -> SagaType:
    return "purchase" if step in PURCHASE_STEPS else "return"


def action_of(step: str) -> Action:
    return Action.COMPENSATE if step in COMPENSATIONS else Action.EXECUTE


IDENTIFIER_PATTERN = r"[A-Za-z0-9_.:@-]{1,64}"
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=rf"^{IDENTIFIER_PATTERN}$")]
FreeText = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]
"""Any text but control characters (tab and newlines allowed): PostgreSQL cannot store a NUL."""
FaultSpec = Annotated[str, StringConstraints(pattern=FAULT_PATTERN.pattern)]
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
    order_id: Identifier
    quantity: Quantity
    reason: FreeText

    @classmethod
    def saga_type(cls) -> SagaType:
        return "return"


REQUEST_MODELS: dict[str, type[SagaRequest]] = {"purchase": PurchaseRequest, "return": ReturnRequest}


class StepEvent(BaseModel):
    """What every step handler receives from its Task state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    saga_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    retry_count: Annotated[int, Field(strict=True, ge=0, le=100)] = 0
    retry_limit: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None
    correlation_id: Identifier | None = None
    """The id of the request that started (or retried) the saga, carried into every step's logs and traces."""

    @property
    def attempt(self) -> int:
        return self.retry_count + 1

    @property
    def is_last_attempt(self) -> bool:
        """True when the state machine will not retry this step again, whatever the error."""
        return self.retry_limit is not None and self.retry_count >= self.retry_limit


def fault_for(faults: dict[str, str], step: str) -> tuple[str, int] | None:
    """('fail', 0) or ('transient', N) for a step named in `faults`, else None."""
    spec = faults.get(step)
    if spec is None:
        return None
    match = FAULT_PATTERN.fullmatch(spec)
    if match is None:
        raise ValueError(f"bad fault spec {spec!r}")
    return ("transient", int(match.group(2))) if match.group(2) else ("fail", 0)
