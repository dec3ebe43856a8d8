"""The HTTP adapter of the Chalice app: parse and check requests, call the saga service, shape answers.

Every error leaves as JSON `{"error", "message", "details"}`; nothing a client sends can cause a 500.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

from chalice.app import ChaliceUnhandledError, Request, Response
from pydantic import BaseModel, ValidationError

from chalicelib.adapters import step_functions
from chalicelib.adapters.database_errors import transience
from chalicelib.adapters.tables import Saga
from chalicelib.domain.contracts import IDENTIFIER_PATTERN, SagaRequest
from chalicelib.entrypoints import preferences
from chalicelib.observability.telemetry import Stopwatch, current_keys, logger, saga_scope, traced
from chalicelib.presentation import console_page, saga_page
from chalicelib.presentation.api_models import (
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    PREFER_HEADER,
    PREFERENCE_APPLIED_HEADER,
    BulkRetryAccepted,
    BulkRetryPreview,
    BulkRetryRequest,
    OperationView,
    ProductList,
    ProductView,
    ResolveRequest,
    SagaAccepted,
    SagaHistory,
    SagaList,
    SagaListQuery,
    SagaStats,
    SagaStatsQuery,
    SagaView,
)
from chalicelib.service import bulk_retry, operator_actions, products, recovery, saga_search, sagas
from chalicelib.service.executions import UNFINISHED, boto3_step_functions

MAX_BODY_BYTES = 256 * 1024
"""Step Functions' limit on an execution's input."""
RETRY_AFTER_SECONDS = 5
"""How long a client waits before it sends again what Step Functions could not start (a 503)."""

SAGA_ID = OPERATION_ID = re.compile(r"[0-9a-f]{32}")
IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
"""Path parameters that cannot name anything are 404 before any query (PostgreSQL refuses NUL bytes)."""
ASSUMED_ROLE = re.compile(r"arn:(?P<partition>[\w-]+):sts::(?P<account>\d+):assumed-role/(?P<role>[^/]+)/[^/]+")
JSON_MEDIA_TYPE = "application/json"
Model = TypeVar("Model", bound=BaseModel)
Params = ParamSpec("Params")
Answer = TypeVar("Answer")


class ApiError(ChaliceUnhandledError):
    """Answered as `{"error", "message", "details"}` with its status code by `answer_errors_as_json`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str | list[str]] | None = None,
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details or []
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"error": self.error, "message": self.message, "details": self.details}
        return Response(body=body, status_code=self.status, headers=self.headers)


def _unavailable(message: str) -> ApiError:
    """503 with Retry-After: Step Functions or the database could not serve us now; nothing the client sent is
    wrong."""
    return ApiError(503, "ServiceUnavailable", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _unavailable_on_database_errors(route: Callable[Params, Answer]) -> Callable[Params, Answer]:
    """A database error that a retry fixes (a deadlock, a failover, no connection left) is no fault of the request:
    503 with Retry-After. (Chalice answers what a route raises with its own 500 before any middleware sees it.)"""

    @functools.wraps(route)
    def answer(*args: Params.args, **kwargs: Params.kwargs) -> Answer:
        try:
            return route(*args, **kwargs)
        except Exception as error:
            if transience(error) is None:
                raise
            logger.warning("the database could not serve %s now", route.__name__, exc_info=True)
            raise _unavailable("the database could not serve the request now; try again") from None

    return answer


@_unavailable_on_database_errors
def start_saga(request: Request, model: type[SagaRequest]) -> Response:
    received = time.monotonic()
    saga_request, key = _parse_both(lambda: parse_body(request, model), lambda: idempotency_key(request.headers))
    wait = preferences.requested_wait(request.headers)
    try:
        saga = sagas.start_saga(saga_request, step_functions.start_execution, key, correlation_id(), caller_of(request))
    except sagas.FaultsNotAllowed as error:
        raise _bad("faults", str(error)) from None
    except sagas.IdempotencyKeyReused as error:
        raise _bad(IDEMPOTENCY_HEADER, str(error), status=409, error="IdempotencyKeyReused") from None
    except sagas.SagaNotStarted as error:
        logger.warning("saga recorded, execution not started", exc_info=True)
        again = "send the request again with the same Idempotency-Key" if key else "it starts within minutes"
        raise _unavailable(
            f"saga {error.saga.id} is recorded but could not be started now; {again} (GET /sagas/{error.saga.id})"
        ) from None
    # The answer varies with Prefer whether or not this request sent it (RFC 7240 §2).
    varies: dict[str, str | list[str]] = {"Vary": PREFER_HEADER}
    view = None if wait is None else sagas.await_outcome(saga.id, wait - (time.monotonic() - received))
    if view is None:  # no wait asked for, or no Redis to wait on: the preference is not applied
        return _accepted(saga, varies)
    applied = varies | {PREFERENCE_APPLIED_HEADER: f"wait={wait}"}
    if view["status"] in UNFINISHED:
        return _accepted(saga, applied, status=view["status"])
    return Response(body=SagaView.model_validate(view).model_dump(mode="json"), status_code=200, headers=applied)


def _accepted(saga: Saga, headers: dict[str, str | list[str]] | None = None, status: str | None = None) -> Response:
    accepted = SagaAccepted.model_validate(
        {
            "saga_id": saga.id,
            "type": saga.type,
            "status": status or saga.status,
            "links": {"self": f"/sagas/{saga.id}"},
        }
    )
    return Response(body=accepted.model_dump(mode="json"), status_code=202, headers=headers)


@_unavailable_on_database_errors
def get_saga(saga_id: str) -> dict[str, Any]:
    view = sagas.read_saga(saga_id) if SAGA_ID.fullmatch(saga_id) else None
    return _found(SagaView, view, f"no saga {saga_id!r}")


@_unavailable_on_database_errors
def retry_saga(saga_id: str) -> Response:
    try:
        known = SAGA_ID.fullmatch(saga_id)
        saga = recovery.retry(saga_id, boto3_step_functions(), correlation_id()) if known else None
    except recovery.NotRetryable as error:
        raise ApiError(409, "NotRetryable", str(error)) from None
    except step_functions.StepFunctionsUnavailable:
        logger.warning("retry not started", exc_info=True)
        raise _unavailable(f"saga {saga_id} could not be retried now; try again") from None
    return _acted_on(saga, saga_id)


@_unavailable_on_database_errors
def retry_sagas(request: Request) -> Response:
    """A bulk retry: with `dry_run`, how many sagas it would retry; else the operation recorded for the worker."""
    body = parse_body(request, BulkRetryRequest)
    if body.dry_run:
        found = bulk_retry.preview(body.filter)
        preview = BulkRetryPreview(matched=found.matched, saga_ids=[saga["saga_id"] for saga in found.sagas])
        return Response(body=preview.model_dump(mode="json"), status_code=200)
    operation = bulk_retry.submit(body.filter, caller_of(request))
    accepted = BulkRetryAccepted.model_validate(
        {"operation_id": operation.id, "matched": operation.matched, "links": {"self": f"/operations/{operation.id}"}}
    )
    return Response(body=accepted.model_dump(mode="json"), status_code=202)


@_unavailable_on_database_errors
def get_operation(operation_id: str) -> dict[str, Any]:
    operation = bulk_retry.read(operation_id) if OPERATION_ID.fullmatch(operation_id) else None
    return _found(OperationView, operation, f"no operation {operation_id!r}")


@_unavailable_on_database_errors
def resolve_saga(request: Request, saga_id: str) -> Response:
    body = parse_body(request, ResolveRequest)
    try:
        known = SAGA_ID.fullmatch(saga_id)
        saga = operator_actions.resolve(saga_id, body.note, caller_of(request)) if known else None
    except operator_actions.NotActionable as error:
        raise ApiError(409, "NotResolvable", str(error)) from None
    return _acted_on(saga, saga_id)


@_unavailable_on_database_errors
def cancel_saga(request: Request, saga_id: str) -> Response:
    try:
        saga = operator_actions.cancel(saga_id, caller_of(request)) if SAGA_ID.fullmatch(saga_id) else None
    except operator_actions.NotActionable as error:
        raise ApiError(409, "NotCancellable", str(error)) from None
    return _acted_on(saga, saga_id)


def _acted_on(saga: Saga | None, saga_id: str) -> Response:
    if saga is None:
        raise ApiError(404, "NotFound", f"no saga {saga_id!r}")
    return _accepted(saga)


@_unavailable_on_database_errors
def view_page(saga_id: str) -> Response:
    view = sagas.read_saga(saga_id) if SAGA_ID.fullmatch(saga_id) else None
    events = sagas.read_history(saga_id) if view is not None else None
    if view is None or events is None:
        raise ApiError(404, "NotFound", f"no saga {saga_id!r}")
    return _html(saga_page.render_page(view, events))


def _html(page: str) -> Response:
    return Response(body=page, status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})


@_unavailable_on_database_errors
def console(query_params: Mapping[str, str] | None) -> Response:
    # A search form sends its empty fields too: a key left empty is a key not given.
    given = {key: value for key, value in (query_params or {}).items() if value}
    query = _parse(SagaListQuery, given, location="query")
    try:
        items, next_cursor = saga_search.search(query.saga_filter(), query.limit, query.cursor)
    except saga_search.BadCursor as error:
        raise _bad("cursor", str(error)) from None
    listed = SagaList.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")
    stats = SagaStats.model_validate(saga_search.stats()).model_dump(mode="json")
    html = console_page.render_console(given, stats, listed["items"], next_cursor, datetime.now(UTC))
    return _html(html)


@_unavailable_on_database_errors
def get_history(saga_id: str) -> dict[str, Any]:
    events = sagas.read_history(saga_id) if SAGA_ID.fullmatch(saga_id) else None
    return _found(SagaHistory, None if events is None else {"events": events}, f"no saga {saga_id!r}")


@_unavailable_on_database_errors
def list_sagas(query_params: Mapping[str, str] | None) -> dict[str, Any]:
    query = _parse(SagaListQuery, dict(query_params or {}), location="query")
    try:
        items, next_cursor = saga_search.search(query.saga_filter(), query.limit, query.cursor)
    except saga_search.BadCursor as error:
        raise _bad("cursor", str(error)) from None
    return SagaList.model_validate({"items": items, "next_cursor": next_cursor}).model_dump(mode="json")


@_unavailable_on_database_errors
def saga_stats(query_params: Mapping[str, str] | None) -> dict[str, Any]:
    query = _parse(SagaStatsQuery, dict(query_params or {}), location="query")
    return SagaStats.model_validate(saga_search.stats(query.since)).model_dump(mode="json")


@_unavailable_on_database_errors
def list_products() -> dict[str, Any]:
    return ProductList.model_validate({"items": products.list_products()}).model_dump(mode="json")


@_unavailable_on_database_errors
def get_product(sku: str) -> dict[str, Any]:
    product = products.product_view(sku) if IDENTIFIER.fullmatch(sku) else None
    return _found(ProductView, product, f"no product {sku!r}")


def parse_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON object body as `model`; ApiError 413, 415 or 400 naming every bad field."""
    media_type = (request.headers.get("content-type") or JSON_MEDIA_TYPE).split(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise _bad("Content-Type", f"send the body as {JSON_MEDIA_TYPE}, not {media_type}", 415, "UnsupportedMediaType")
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise _bad("body", f"{len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted", 413, "PayloadTooLarge")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise _bad("body", str(error), error="InvalidJSON", message="the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("body", f"expected a JSON object, got {type(data).__name__}", message="the body must be an object")
    return _parse(model, data, location="body")


def caller_of(request: Request) -> str:
    """The IAM principal API Gateway verified (every route needs SigV4 there); `make run` has one local caller."""
    identity = (request.context or {}).get("identity") or {}
    user_arn = identity.get("userArn")
    return principal(user_arn) if user_arn else sagas.LOCAL_CALLER


def principal(user_arn: str) -> str:
    """Who a signed request comes from, lasting beyond one session: for an assumed role, API Gateway's `userArn` is
    `arn:aws:sts::<account>:assumed-role/<role>/<session>`, and the session name changes with every process, task or
    `botocore-session-<time>`; the role, `arn:aws:iam::<account>:role/<role>`, does not (its path is not in the
    session's ARN; a role's name is unique in its account without it). An IAM user's ARN is kept as it is."""
    session = ASSUMED_ROLE.fullmatch(user_arn)
    if session is None:
        return user_arn
    return f"arn:{session['partition']}:iam::{session['account']}:role/{session['role']}"


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get(IDEMPOTENCY_HEADER.lower())
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable() or not key.isascii():
        raise _bad(IDEMPOTENCY_HEADER, "must be 1 to 200 printable ASCII characters")
    return key


def _parse_both(body: Callable[[], Model], key: Callable[[], str | None]) -> tuple[Model, str | None]:
    """Parse the body and the Idempotency-Key, naming the bad fields of both when both are bad."""
    problems: list[ApiError] = []
    parsed_body: Model | None = None
    parsed_key: str | None = None
    try:
        parsed_body = body()
    except ApiError as error:
        problems.append(error)
    try:
        parsed_key = key()
    except ApiError as error:
        problems.append(error)
    if not problems:
        return cast(Model, parsed_body), parsed_key
    first = problems[0]
    if len(problems) == 1 or first.status != 400:
        raise first
    details = [detail for problem in problems for detail in problem.details]
    raise ApiError(400, first.error, "; ".join(problem.message for problem in problems), details)


def _bad(field: str, problem: str, status: int = 400, error: str = "ValidationError", message: str = "") -> ApiError:
    """An ApiError about one field."""
    return ApiError(status, error, message or f"{field}: {problem}", [{"field": field, "problem": problem}])


def _parse(model: type[Model], data: dict[str, Any], location: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(part) for part in problem["loc"]) or location, "problem": problem["msg"]}
            for problem in error.errors()
        ]
        fields = ", ".join(dict.fromkeys(detail["field"] for detail in details))
        raise ApiError(400, "ValidationError", f"invalid {location}: {fields}", details) from None


def _found(view: type[BaseModel], data: dict[str, Any] | None, message: str) -> dict[str, Any]:
    if data is None:
        raise ApiError(404, "NotFound", message)
    return view.model_validate(data).model_dump(mode="json")


def correlation_id() -> str | None:
    """The current request's correlation id (set by `observe_requests`)."""
    return current_keys().get("correlation_id")


def observe_requests(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """Chalice middleware: one log line and one trace subsegment per request, under its correlation id.

    The id is the caller's X-Correlation-Id when it is a plain identifier, else API Gateway's request id; it is
    echoed in the answer and passed on to the sagas the request starts.
    """
    given = request.headers.get(CORRELATION_HEADER.lower()) or ""
    request_id = (request.context or {}).get("requestId") or uuid.uuid4().hex
    correlation = given if IDENTIFIER.fullmatch(given) else str(request_id)
    saga_id = (request.uri_params or {}).get("saga_id")
    watch = Stopwatch()
    with saga_scope(correlation_id=correlation, saga_id=saga_id if saga_id and SAGA_ID.fullmatch(saga_id) else None):
        with traced(f"## {request.method} {request.path}"):
            response = get_response(request)
        response.headers[CORRELATION_HEADER] = correlation
        body = response.body if isinstance(response.body, dict) else {}
        logger.info(
            "request answered",
            extra={
                "method": request.method,
                "path": request.path,
                "status_code": response.status_code,
                "latency_ms": watch.milliseconds,
                **({"started_saga_id": body["saga_id"]} if _started(request, response) and "saga_id" in body else {}),
            },
        )
    return response


def _started(request: Request, response: Response) -> bool:
    """A POST that started (or acted on) a saga: 202, or 200 when it waited for the outcome (Prefer: wait)."""
    return response.status_code == 202 or (request.method == "POST" and response.status_code == 200)


def answer_errors_as_json(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice middleware: ApiError, Chalice's own errors and anything unexpected, all in the one error shape."""
    try:
        response = get_response(event)
    except ApiError as error:
        return error.response()
    except Exception:
        logger.exception("unexpected error answering %s", getattr(event, "path", "a request"))
        return ApiError(500, "InternalError", "the request could not be completed; it has been logged").response()
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        # Chalice answers some requests itself (a POST body that is not JSON: 415) in its own shape.
        field = "Content-Type" if response.status_code == 415 else "request"
        return _bad(field, str(body["Message"]), response.status_code, str(body["Code"])).response()
    return response
