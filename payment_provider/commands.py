"""The requests the provider accepts, validated at the door; error messages name the field, never its value."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from payment_provider.answers import Answer, error_answer

MAX_AMOUNT_CENTS = 99_999_999
"""Like Stripe's ceiling (eight digits); it also keeps sums far inside a 64-bit column."""
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]+")
OBJECT_ID_PATTERN = r"[A-Za-z0-9_]{1,64}"
"""What a charge or refund id can look like; a path with anything else names no object."""
_OBJECT_ID = re.compile(OBJECT_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def _printable(value: str) -> str:
    if not _PRINTABLE.fullmatch(value):
        raise ValueError("must be printable text")
    return value


def _object_id(value: str) -> str:
    if not _OBJECT_ID.fullmatch(value):
        raise ValueError("is not a valid id")
    return value


AmountCents = Annotated[int, Field(gt=0, le=MAX_AMOUNT_CENTS)]
PrintableText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
ObjectId = Annotated[str, AfterValidator(_object_id)]


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """A digest of the request, to tell a retry (same digest) from a reused key (another digest)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class ChargeRequest(_Command):
    amount_cents: AmountCents
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(str.lower)]
    payment_token: Annotated[str, Field(min_length=1, max_length=200)]
    saga_id: PrintableText


class RefundRequest(_Command):
    charge_id: ObjectId
    amount_cents: AmountCents


class ListQuery(_Command):
    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT
    starting_after: ObjectId | None = None
    saga_id: PrintableText | None = None
    charge_id: ObjectId | None = None


_Parsed = TypeVar("_Parsed", bound=_Command)


def parse_body(model: type[_Parsed], payload: Any) -> _Parsed | Answer:
    """`payload` as a `model`, or the 400 answer naming the first field that is missing or wrong."""
    if not isinstance(payload, dict):
        return error_answer(400, "invalid_request", "the request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        return _first_problem(error)


def parse_query(query: dict[str, str]) -> ListQuery | Answer:
    """The listing parameters of a query string (all strings there), or the 400 answer naming the bad one."""
    known = {name: value for name, value in query.items() if name in ListQuery.model_fields}
    if "limit" in known:
        try:
            limit: Any = int(known["limit"])
        except ValueError:
            return error_answer(400, "invalid_request", "limit: must be an integer", param="limit")
        known["limit"] = limit
    return parse_body(ListQuery, known)


def parse_idempotency_key(header: str | None) -> str | Answer:
    """The `Idempotency-Key` header's value, or the 400 answer when it is missing or malformed."""
    if header is None or not header.strip():
        return error_answer(400, "missing_idempotency_key", "the Idempotency-Key header is required")
    if not _IDEMPOTENCY_KEY.fullmatch(header.strip()):
        return error_answer(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters"
        )
    return header.strip()


def _first_problem(error: ValidationError) -> Answer:
    problem = error.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(part) for part in problem["loc"])[:64] or "body"
    kind, context = problem["type"], problem.get("ctx", {})
    described = {
        "missing": "is required",
        "extra_forbidden": "is not a known field",
        "int_type": "must be an integer",
        "string_type": "must be a string",
        "greater_than": f"must be greater than {context.get('gt')}",
        "greater_than_equal": f"must be at least {context.get('ge')}",
        "less_than_equal": f"must be at most {context.get('le')}",
        "string_too_short": "must not be empty",
        "string_too_long": f"must be at most {context.get('max_length')} characters",
    }.get(kind)
    if kind == "string_pattern_mismatch" and field == "currency":
        described = "must be a three-letter currency code"
    if described is None:
        described = str(problem["msg"]).removeprefix("Value error, ").removeprefix("Input ")
    code = "missing_field" if kind == "missing" else "unknown_field" if kind == "extra_forbidden" else "invalid_field"
    return error_answer(400, code, f"{field}: {described}", param=field)
