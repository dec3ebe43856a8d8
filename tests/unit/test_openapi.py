"""The OpenAPI document: valid, the same routes as the Chalice app, schemas taken from the API's own models."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from chalice.test import Client
from openapi_spec_validator import validate
from pydantic import BaseModel

from app import app
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaStatus
from chalicelib.presentation.api_models import (
    IDEMPOTENCY_HEADER,
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
from chalicelib.presentation.openapi import openapi_document

SELF = ("GET", "/openapi.json")
BODY_ERRORS = {400, 409, 413, 415, 503}
OPERATIONS: dict[tuple[str, str], tuple[int, type[BaseModel] | None, type[BaseModel] | None, set[int]]] = {
    ("POST", "/purchases"): (202, SagaAccepted, PurchaseRequest, BODY_ERRORS),
    ("POST", "/returns"): (202, SagaAccepted, ReturnRequest, BODY_ERRORS),
    ("POST", "/sagas/{saga_id}/retry"): (202, SagaAccepted, None, {404, 409, 503}),
    ("POST", "/sagas/retry"): (202, BulkRetryAccepted, BulkRetryRequest, {400, 413, 415, 503}),
    ("GET", "/operations/{operation_id}"): (200, OperationView, None, {404}),
    ("POST", "/sagas/{saga_id}/resolve"): (202, SagaAccepted, ResolveRequest, {400, 404, 409, 413, 415, 503}),
    ("POST", "/sagas/{saga_id}/cancel"): (202, SagaAccepted, None, {404, 409, 503}),
    ("GET", "/sagas"): (200, SagaList, None, {400}),
    ("GET", "/sagas/stats"): (200, SagaStats, None, {400}),
    ("GET", "/sagas/{saga_id}"): (200, SagaView, None, {404}),
    ("GET", "/sagas/{saga_id}/history"): (200, SagaHistory, None, {404}),
    ("GET", "/sagas/{saga_id}/view"): (200, None, None, {404}),
    ("GET", "/console"): (200, None, None, {400}),
    ("GET", "/products"): (200, ProductList, None, set()),
    ("GET", "/products/{sku}"): (200, ProductView, None, {404}),
}
"""Per route: its success status and answer model, its request model, and every error status it can return."""
OTHER_SUCCESSES: dict[tuple[str, str], dict[int, type[BaseModel]]] = {
    ("POST", "/sagas/retry"): {200: BulkRetryPreview},
    ("POST", "/purchases"): {200: SagaView},
    ("POST", "/returns"): {200: SagaView},
}
"""A bulk retry's dry run answers 200 with its count; a saga that has its outcome within `Prefer: wait`, 200 with
the saga."""


def _document() -> dict[str, Any]:
    return copy.deepcopy(openapi_document())


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return dict(document["paths"][path][method.lower()])


def _resolve(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with every local $ref (`#/components/schemas/X` or `#/$defs/X`) replaced by its definition."""
    if isinstance(schema, list):
        return [_resolve(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = re.fullmatch(r"#/(?:components/schemas|\$defs)/(.+)", schema["$ref"])
        assert name is not None, schema["$ref"]
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return _resolve(definitions[name.group(1)], definitions) | _resolve(rest, definitions)
    return {key: _resolve(value, definitions) for key, value in schema.items()}


def _model_schema(model: type[BaseModel], mode: str) -> Any:
    schema = model.model_json_schema(mode="validation" if mode == "validation" else "serialization")
    return _resolve({k: v for k, v in schema.items() if k != "$defs"}, schema.get("$defs", {}))


def _json_schema(document: dict[str, Any], content: dict[str, Any]) -> Any:
    assert set(content["content"]) == {"application/json"}
    return _resolve(content["content"]["application/json"]["schema"], document["components"]["schemas"])


def _app_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, methods in app.routes.items() for method in methods}


def test_document_is_valid_openapi() -> None:
    document = _document()

    validate(document)

    assert document["openapi"].startswith("3.")


def test_document_has_exactly_the_apps_routes_except_itself() -> None:
    documented = {(method.upper(), path) for path, operations in _document()["paths"].items() for method in operations}

    assert SELF in _app_routes()
    assert documented == _app_routes() - {SELF}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(
    ("path", "model"), [("/purchases", PurchaseRequest), ("/returns", ReturnRequest)], ids=["purchase", "return"]
)
def test_request_body_schema_is_the_request_models_own(path: str, model: type[BaseModel]) -> None:
    document = _document()
    request_body = _operation(document, "POST", path)["requestBody"]

    schema = _json_schema(document, request_body)

    assert request_body["required"] is True
    assert schema == _model_schema(model, "validation")
    assert set(schema["properties"]) == set(model.model_fields)
    assert set(schema["required"]) == {name for name, info in model.model_fields.items() if info.is_required()}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS), ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_documents_its_success_and_every_error_status_it_can_return(method: str, path: str) -> None:
    document = _document()
    success, answer, _, errors = OPERATIONS[(method, path)]
    responses = _operation(document, method, path)["responses"]

    others = OTHER_SUCCESSES.get((method, path), {})
    assert set(responses) == {str(status) for status in {success, *others, *errors}}
    if answer is None:  # an HTML page
        assert responses[str(success)]["content"] == {"text/html": {"schema": {"type": "string"}}}
    else:
        assert _json_schema(document, responses[str(success)]) == _model_schema(answer, "serialization")
    for status, model in others.items():
        assert _json_schema(document, responses[str(status)]) == _model_schema(model, "serialization")
    for status in errors:
        assert responses[str(status)]["description"]
        assert _json_schema(document, responses[str(status)]) == _model_schema(ErrorBody, "serialization")


@pytest.mark.parametrize(("method", "path"), list(OPERATIONS), ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_documents_its_path_query_and_header_parameters(method: str, path: str) -> None:
    parameters = _operation(_document(), method, path).get("parameters", [])
    by_place = {place: {p["name"] for p in parameters if p["in"] == place} for place in ("path", "query", "header")}
    view_args = app.routes[path][method].view_args

    assert by_place["path"] == set(re.findall(r"{(\w+)}", path)) == set(view_args)
    assert all(p["required"] for p in parameters if p["in"] == "path")
    queries = {"/sagas": SagaListQuery, "/sagas/stats": SagaStatsQuery, "/console": SagaListQuery}
    assert by_place["query"] == (set(queries[path].model_fields) if path in queries else set())
    assert by_place["header"] == ({IDEMPOTENCY_HEADER, PREFER_HEADER} if path in ("/purchases", "/returns") else set())
    assert not any(p["required"] for p in parameters if p["in"] != "path")


def test_list_query_parameters_carry_the_query_models_bounds() -> None:
    parameters = {p["name"]: p["schema"] for p in _operation(_document(), "GET", "/sagas")["parameters"]}

    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 100)
    assert parameters["type"]["enum"] == ["purchase", "return"]
    assert (parameters["cursor"]["minLength"], parameters["cursor"]["maxLength"]) == (1, 512)
    assert parameters["created_after"]["format"] == parameters["created_before"]["format"] == "date-time"


def test_the_status_filter_is_a_comma_separated_list_of_statuses() -> None:
    document = _document()
    status = next(p for p in _operation(document, "GET", "/sagas")["parameters"] if p["name"] == "status")

    assert (status["style"], status["explode"]) == ("form", False)
    items = _resolve(status["schema"]["items"], document["components"]["schemas"])
    assert items["enum"] == [status.value for status in SagaStatus]


def test_openapi_json_route_serves_the_same_document() -> None:
    with Client(app) as client:
        response = client.http.get("/openapi.json")

    assert response.status_code == 200
    assert response.json_body == json.loads(json.dumps(openapi_document()))


def test_a_503_tells_the_client_when_to_send_again() -> None:
    document = _document()
    for method, path in (("POST", "/purchases"), ("POST", "/returns"), ("POST", "/sagas/{saga_id}/retry")):
        answer = _operation(document, method, path)["responses"]["503"]
        assert answer["headers"]["Retry-After"]["schema"] == {"type": "integer"}


@pytest.mark.parametrize("path", ["/purchases", "/returns"])
def test_starting_a_saga_documents_prefer_wait_and_what_its_answers_say_of_it(path: str) -> None:
    operation = _operation(_document(), "POST", path)
    prefer = next(p for p in operation["parameters"] if p["name"] == PREFER_HEADER)

    assert "wait=N" in prefer["description"] and not prefer["required"]
    for status in ("200", "202"):
        headers = operation["responses"][status]["headers"]
        assert set(headers) == {PREFERENCE_APPLIED_HEADER, "Vary"}
        assert headers[PREFERENCE_APPLIED_HEADER]["schema"]["pattern"] == "^wait=[0-9]+$"
