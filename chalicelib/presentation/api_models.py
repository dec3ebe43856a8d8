"""Pydantic models of what the HTTP API takes and answers; the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chalicelib.domain.contracts import Action, AttemptStatus, FreeText, SagaStatus, SagaType
from chalicelib.domain.saga_filter import Moment, SagaFilter

IDEMPOTENCY_HEADER = "Idempotency-Key"
CORRELATION_HEADER = "X-Correlation-Id"
PREFER_HEADER = "Prefer"
PREFERENCE_APPLIED_HEADER = "Preference-Applied"
MAX_WAIT_SECONDS = 20
"""`Prefer: wait` asks for at most this (more is cut to it): with the saga's start, the answer stays inside API
Gateway's 29-second integration timeout (and the API function's 30-second one)."""


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
    attempt: int = Field(description="Counted from 1 in each of the saga's executions")
    execution: str | None = Field(
        description="The name of the execution the attempt ran in: the saga id, then `<saga id>-2`, ... for a retried "
        "or resumed saga; null for a change of the saga's status"
    )
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
    customer_id: str | None
    order_id: str | None = Field(description="A return's order; a purchase's, once confirmed")
    sku: str | None = Field(description="A purchase's product; a return's, once its order was found")
    step: str | None = Field(
        description="The last step whose failure moved the saga: to compensation, or (a compensation) to FAILED"
    )
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


class SagaListQuery(SagaFilter):
    """The query string of `GET /sagas`: a filter, and the page."""

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    def saga_filter(self) -> SagaFilter:
        return SagaFilter.model_validate(self.model_dump(include=set(SagaFilter.model_fields), exclude_none=True))


class SagaStatsQuery(BaseModel):
    """The query string of `GET /sagas/stats`."""

    model_config = ConfigDict(extra="forbid")

    since: Moment | None = Field(None, description="RFC 3339; count the sagas created at or after it (all without)")


class SagaStats(BaseModel):
    since: datetime | None
    total: int = Field(description="Sagas created since `since`")
    by_status: dict[SagaStatus, int] = Field(description="Of them, how many are in each status")
    by_type: dict[SagaType, int] = Field(description="Of them, how many are of each type")
    stuck: int = Field(
        description="Of every saga, those RUNNING or COMPENSATING, quiet for the reconciler's grace period and leased "
        "by nobody: what its next pass looks at, to resume those without a live execution (docs/design.md §7.2)"
    )
    oldest_running_age_seconds: float | None = Field(
        description="Of every saga, how long ago the oldest RUNNING one was created; null when none runs"
    )


class BulkRetryRequest(BaseModel):
    """The body of `POST /sagas/retry`."""

    model_config = ConfigDict(extra="forbid")

    filter: SagaFilter = Field(
        SagaFilter.model_validate({}),
        description="The keys of `GET /sagas` (a JSON list or a comma-separated string for `status`); of the sagas "
        "they match, those a retry would take now: FAILED, or stuck as the reconciler sees them",
    )
    dry_run: bool = Field(False, description="Count the sagas and show the first 100; change nothing")


class BulkRetryPreview(BaseModel):
    matched: int = Field(description="The sagas a real run would retry now")
    saga_ids: list[str] = Field(description="The newest 100 of them")


class OperationLinks(BaseModel):
    self: str = Field(description="Where to follow the operation")


class BulkRetryAccepted(BaseModel):
    operation_id: str
    matched: int = Field(description="The sagas recorded for the worker to retry: what a dry run counted")
    links: OperationLinks


class OperationView(BaseModel):
    operation_id: str
    kind: Literal["retry"]
    status: Literal["PENDING", "RUNNING", "DONE"] = Field(
        description="PENDING until the worker takes up a saga; DONE once every saga is done or failed"
    )
    filter: dict[str, Any] = Field(description="The filter as it was given")
    matched: int = Field(description="The sagas the filter matched when the operation was asked for")
    started: int = Field(description="Of them, those the worker has taken up")
    done: int = Field(description="Of those, the ones whose retry started their next execution")
    failed: int = Field(
        description="Of those, the ones a retry refused: ended, retried or resolved meanwhile, or their execution runs"
    )
    created_at: datetime
    updated_at: datetime
