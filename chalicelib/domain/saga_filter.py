"""Which sagas an operator means: the keys of a search (`GET /sagas`), also those of a bulk action on sagas.

One model for every door (a query string, a JSON body, the command line), so that a listing and an action given the
same keys mean the same sagas (docs/design.md §3.1).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from chalicelib.domain.contracts import Identifier, SagaStatus, SagaType, StepName

RFC_3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
YEARS = (1970, 9998)
"""Years a time may name: well inside what every database and driver converts."""


def _statuses(value: Any) -> Any:
    """`FAILED,RUNNING` (a query string's form) or a list of statuses, each one of SagaStatus."""
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ValueError("give one or more statuses, comma-separated")
    unknown = [name for name in names if name not in SagaStatus.__members__]
    if unknown:
        raise ValueError(f"unknown status {', '.join(map(repr, unknown))}; statuses are {', '.join(SagaStatus)}")
    return list(dict.fromkeys(names))


def _rfc_3339(value: Any) -> Any:
    """An RFC 3339 date-time with its offset (`2026-12-06T10:00:00Z`), as UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        moment = value
    elif isinstance(value, str) and RFC_3339.fullmatch(value.upper()):
        try:
            moment = datetime.fromisoformat(value.upper())
        except ValueError as error:
            raise ValueError(f"not a valid date-time: {error}") from None
    else:
        raise ValueError("give an RFC 3339 date-time with its offset, like 2026-12-06T10:00:00Z (in a URL, `+` is %2B)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = datetime.max.replace(tzinfo=UTC)
    if not YEARS[0] <= moment.year <= YEARS[1]:
        raise ValueError(f"give a time from {YEARS[0]} to {YEARS[1]}")
    return moment


Statuses = Annotated[list[SagaStatus], BeforeValidator(_statuses)]
Moment = Annotated[datetime, BeforeValidator(_rfc_3339)]


class SagaFilter(BaseModel):
    """Sagas that match every key given (AND); no key: every saga."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Statuses | None = Field(None, description="One or more statuses, comma-separated: any of them")
    type: SagaType | None = None
    customer_id: Identifier | None = None
    order_id: Identifier | None = Field(None, description="A return of this order, or the purchase that made it")
    sku: Identifier | None = Field(
        None, description="A purchase of this product, or a return of an order of it (once validate_return found it)"
    )
    step: StepName | None = Field(
        None,
        description="The last step whose failure moved the saga: the forward step that sent it to compensation, or "
        "the compensation that sent it to FAILED",
    )
    created_after: Moment | None = Field(None, description="RFC 3339; sagas created at or after it")
    created_before: Moment | None = Field(None, description="RFC 3339; sagas created before it")
