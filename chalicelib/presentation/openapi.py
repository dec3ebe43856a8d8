"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models the API itself uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest
from chalicelib.presentation.api_models import (
    IDEMPOTENCY_HEADER,
    MAX_WAIT_SECONDS,
    PREFER_HEADER,
    PREFERENCE_APPLIED_HEADER,
    BulkRetryAccepted,
    BulkRetryPreview,
    BulkRetryRequest,
    ErrorBody,
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

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answer: tuple[int, type[BaseModel] | None]
    """The success status and its JSON model; None for an HTML page."""
    body: type[BaseModel] | None = None
    errors: dict[int, str] = field(default_factory=dict)
    query: type[BaseModel] | None = None
    also: tuple[tuple[int, type[BaseModel], str], ...] = ()
    """Other successes: (status, JSON model, when)."""


_UNAVAILABLE = {503: "Step Functions could not start the execution now; send again after Retry-After seconds"}
_BODY_ERRORS = {
    400: "Invalid input; every bad field is named in `details`",
    409: "The Idempotency-Key already started a different request",
    413: "Body over 256 KB",
    415: "Body not JSON",
    **_UNAVAILABLE,
}
_NOT_FOUND = {404: "No such saga"}
_BAD_QUERY = {400: "Invalid query; every bad key is named in `details`"}

_OUTCOME = (
    (
        200,
        SagaView,
        "With `Prefer: wait=N`: the saga had its outcome within N seconds; it is shown as `GET /sagas/{saga_id}` "
        "shows it",
    ),
)

OPERATIONS = (
    Operation(
        "post", "/purchases", "Start a purchase saga", (202, SagaAccepted), PurchaseRequest, _BODY_ERRORS, also=_OUTCOME
    ),
    Operation(
        "post", "/returns", "Start a return saga", (202, SagaAccepted), ReturnRequest, _BODY_ERRORS, also=_OUTCOME
    ),
    Operation(
        "post",
        "/sagas/{saga_id}/retry",
        "Retry a FAILED saga's compensations once their cause is fixed, or a saga stuck without a live execution",
        (202, SagaAccepted),
        errors={
            404: "No such saga",
            409: "The saga is final, its execution runs, or another retry (or the reconciler) is starting one",
            **_UNAVAILABLE,
        },
    ),
    Operation(
        "post",
        "/sagas/retry",
        "Retry every saga a search's filter matches that a retry would take now (FAILED, or stuck without a live "
        "execution): the operation is recorded and a worker works through it within its StartExecution rate",
        (202, BulkRetryAccepted),
        BulkRetryRequest,
        errors={
            400: "A bad filter key or value, or a key that is not one of `GET /sagas`'s; every one is named in "
            "`details`",
            413: "Body over 256 KB",
            415: "Body not JSON",
            503: "The database could not serve the request now; send again after Retry-After seconds",
        },
        also=(
            (
                200,
                BulkRetryPreview,
                "With `dry_run`: how many sagas it would retry, and the first 100; nothing changes",
            ),
        ),
    ),
    Operation(
        "get",
        "/operations/{operation_id}",
        "A bulk retry's progress: the sagas it matched, started, done and failed",
        (200, OperationView),
        errors={404: "No such operation"},
    ),
    Operation(
        "post",
        "/sagas/{saga_id}/resolve",
        "Close a FAILED saga whose cause was fixed by hand: it ends RESOLVED, the note and the caller in its history",
        (202, SagaAccepted),
        ResolveRequest,
        errors={
            400: "A missing, empty or over-long `note`; every bad field is named in `details`",
            404: "No such saga",
            409: "The saga is not FAILED, or a retry is starting its next execution",
            413: "Body over 256 KB",
            415: "Body not JSON",
            503: "The database could not serve the request now; send again after Retry-After seconds",
        },
    ),
    Operation(
        "post",
        "/sagas/{saga_id}/cancel",
        "Cancel a RUNNING saga: no forward step acts after it, the compensations undo what was done, and the saga "
        "ends CANCELLED (a saga already being cancelled answers as it is)",
        (202, SagaAccepted),
        errors={
            404: "No such saga",
            409: "The saga is final, FAILED, or compensating after a failure (that compensation goes on)",
            503: "The database could not serve the request now; send again after Retry-After seconds",
        },
    ),
    Operation("get", "/sagas", "Search sagas, newest first", (200, SagaList), errors=_BAD_QUERY, query=SagaListQuery),
    Operation(
        "get",
        "/sagas/stats",
        "Counts by status and by type, the stuck sagas, the age of the oldest RUNNING one",
        (200, SagaStats),
        errors=_BAD_QUERY,
        query=SagaStatsQuery,
    ),
    Operation("get", "/sagas/{saga_id}", "A saga's status, steps and result", (200, SagaView), errors=_NOT_FOUND),
    Operation("get", "/sagas/{saga_id}/history", "A saga's audit log", (200, SagaHistory), errors=_NOT_FOUND),
    Operation(
        "get",
        "/sagas/{saga_id}/view",
        "A saga as a page: status, steps, path on the diagram, history",
        (200, None),
        errors=_NOT_FOUND,
    ),
    Operation(
        "get",
        "/console",
        "The operators' page: counts by status, a search (the keys of GET /sagas, kept in the URL), the matching "
        "sagas with their actions, a bulk retry",
        (200, None),
        errors=_BAD_QUERY,
        query=SagaListQuery,
    ),
    Operation("get", "/products", "The catalogue with stock", (200, ProductList)),
    Operation("get", "/products/{sku}", "One product with stock", (200, ProductView), errors={404: "No such product"}),
)


@cache
def openapi_document() -> dict[str, Any]:
    requests = {op.body for op in OPERATIONS if op.body}
    answers = {op.answer[1] for op in OPERATIONS if op.answer[1]} | {
        model for op in OPERATIONS for _, model, _ in op.also
    }
    answers |= {ErrorBody}
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in requests]
    keyed += [(model, "serialization") for model in answers]
    _, schemas = models_json_schema(sorted(keyed, key=lambda pair: pair[0].__name__), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Saga orchestrator",
            "version": "1.0.0",
            "description": "Purchases and returns as sagas on AWS Step Functions; see docs/design.md §3.",
        },
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }


def _operation(op: Operation) -> dict[str, Any]:
    status, answer = op.answer
    success = (
        _json(answer, "Success")
        if answer
        else {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
    )
    responses: dict[str, Any] = {str(status): success}
    responses |= {str(code): _json(model, when) for code, model, when in op.also}
    responses |= {str(code): _json(ErrorBody, text) for code, text in op.errors.items()}
    if op.body is not None and issubclass(op.body, SagaRequest):
        for code in ("200", "202"):
            responses[code]["headers"] = {
                PREFERENCE_APPLIED_HEADER: {
                    "description": "`wait=N` when the answer waited up to N seconds (N at most "
                    f"{MAX_WAIT_SECONDS}) for the outcome; absent when it did not wait",
                    "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
                },
                "Vary": {"description": "`Prefer`: the answer depends on it", "schema": {"type": "string"}},
            }
    if "503" in responses:
        retry_after = {"description": "Seconds to wait before sending again", "schema": {"type": "integer"}}
        responses["503"]["headers"] = {"Retry-After": retry_after}
    operation: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op), "responses": responses}
    parameters = [_path_parameter(name) for name in _path_names(op.path)]
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    if op.body is not None and issubclass(op.body, SagaRequest):
        parameters.append(
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "The same key with the same body starts the saga once; with another body: 409",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
        parameters.append(
            {
                "name": PREFER_HEADER,
                "in": "header",
                "required": False,
                "description": f"RFC 7240. `wait=N`: answer `200` with the saga if it has its outcome within N seconds "
                f"(at most {MAX_WAIT_SECONDS}; more is cut to {MAX_WAIT_SECONDS}), else `202` as without it. Other "
                "preferences, and a `wait` that is not a whole number of seconds, are ignored",
                "schema": {"type": "string"},
            }
        )
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema(ref_template=REF)["properties"]
    parameters = []
    for name, schema in properties.items():
        parameter = {"name": name, "in": "query", "required": False, "schema": _without_null(schema)}
        if parameter["schema"].get("type") == "array":  # `status=FAILED,RUNNING`
            parameter |= {"style": "form", "explode": False}
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: keep the alternative that is not `null`."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        return {**options[0], **{k: v for k, v in schema.items() if k not in ("anyOf", "default")}}
    return schema


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _operation_id(op: Operation) -> str:
    words = [part.strip("{}") for part in op.path.split("/") if part and part != "openapi.json"]
    return "_".join([op.method, *words])
