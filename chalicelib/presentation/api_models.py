"""Pydantic models of what the HTTP API takes and answers; the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chalicelib.domain.contracts import Action, AttemptStatus, FreeText, SagaStatus, SagaType

IDEMPOTENCY_HEADER = "Idempotency-Key"
CORRELATION_HEADER = "X-Correlation-Id"


class SagaLinks(BaseModel):
    self: str = Field(description="Where to follow the saga")


class SagaAccepted(BaseModel):
    saga_id: str
    type: SagaType
    status: SagaStatus
    links: SagaLinks


class StepErrorView(BaseModel):
    type: str | None
    message: str | None


class StepView(BaseModel):
    name: str
    action: Action
    status: AttemptStatus
    attempts: int = Field(ge=1)
    error: StepErrorView | None


class SagaView(BaseModel):
    saga_id: str
    type: SagaType
    status: SagaStatus
    input: dict[str, Any] = Field(
        description='The request; a purchase\'s payment token shows as `payment_method: "…<last 4>"` (`"…"` alone when '
        "the token is shorter than 12 characters), never whole"
    )
    result: dict[str, Any] = Field(description="`order_id` once a purchase completed; what failed when FAILED")
    steps: list[StepView] = Field(description="In the order they first ran")
    created_at: datetime
    updated_at: datetime


class AuditEventView(BaseModel):
    step: str = Field(description="A step's name, or `saga` for a change of the saga's status")
    action: Literal["execute", "compensate", "saga"]
    status: str
    attempt: int
    error_type: str | None
    error_message: str | None
    payload: dict[str, Any]
    time: datetime


class SagaHistory(BaseModel):
    events: list[AuditEventView] = Field(description="The audit log, oldest first")


class SagaSummary(BaseModel):
    saga_id: str
    type: SagaType
    status: SagaStatus
    created_at: datetime
    updated_at: datetime
    links: SagaLinks


class SagaList(BaseModel):
    items: list[SagaSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class ProductView(BaseModel):
    sku: str
    name: str
    price_cents: int
    on_hand: int
    reserved: int
    available: int


class ProductList(BaseModel):
    items: list[ProductView]


class ErrorDetail(BaseModel):
    field: str = Field(description="Dotted path of the bad field; `body`, a header or a query parameter name")
    problem: str


class ErrorBody(BaseModel):
    error: str = Field(description="Error name, e.g. ValidationError, NotFound, IdempotencyKeyReused")
    message: str
    details: list[ErrorDetail]


class ResolveRequest(BaseModel):
    """The body of `POST /sagas/{saga_id}/resolve`."""

    model_config = ConfigDict(extra="forbid")

    note: FreeText = Field(description="What was fixed by hand, for the saga's history (1 to 500 characters)")


class SagaListQuery(BaseModel):
    """The query string of `GET /sagas`."""

    model_config = ConfigDict(extra="forbid")

    type: SagaType | None = None
    status: SagaStatus | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
