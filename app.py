"""API Gateway entry: Chalice routes only. Each parses, calls the core, answers (chalicelib/entrypoints/http_api.py)."""

from __future__ import annotations

from typing import Any, cast

from chalice.app import Chalice, IAMAuthorizer, Request, Response

from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest
from chalicelib.entrypoints import http_api
from chalicelib.presentation.openapi import openapi_document

app = Chalice(app_name="saga-orchestrator")
SIGNED = IAMAuthorizer()
"""Every route needs a SigV4-signed request on API Gateway (IAM auth); `make run` serves them open on loopback, as
chalice local does. Operators reach the saga page with `make saga-page` and the console with `make console`
(infra/tools), which sign their requests."""
ANY_CONTENT = ["*/*"]
"""A GET has no body: its Content-Type, if a client sends one, is no reason to refuse it."""
app.register_middleware(http_api.observe_requests, "http")
app.register_middleware(http_api.answer_errors_as_json, "http")


def current_request() -> Request:
    # Chalice types it Optional; inside a route it is always set.
    return cast(Request, app.current_request)


@app.route("/purchases", methods=["POST"], authorizer=SIGNED)
def start_purchase() -> Response:
    return http_api.start_saga(current_request(), PurchaseRequest)


@app.route("/returns", methods=["POST"], authorizer=SIGNED)
def start_return() -> Response:
    return http_api.start_saga(current_request(), ReturnRequest)


@app.route("/sagas/{saga_id}/retry", methods=["POST"], authorizer=SIGNED, content_types=ANY_CONTENT)
def retry_saga(saga_id: str) -> Response:
    return http_api.retry_saga(saga_id)


@app.route("/sagas/retry", methods=["POST"], authorizer=SIGNED)
def retry_sagas() -> Response:
    return http_api.retry_sagas(current_request())


@app.route("/operations/{operation_id}", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def get_operation(operation_id: str) -> dict[str, Any]:
    return http_api.get_operation(operation_id)


@app.route("/sagas/{saga_id}/resolve", methods=["POST"], authorizer=SIGNED)
def resolve_saga(saga_id: str) -> Response:
    return http_api.resolve_saga(current_request(), saga_id)


@app.route("/sagas/{saga_id}/cancel", methods=["POST"], authorizer=SIGNED, content_types=ANY_CONTENT)
def cancel_saga(saga_id: str) -> Response:
    return http_api.cancel_saga(current_request(), saga_id)


@app.route("/sagas", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def list_sagas() -> dict[str, Any]:
    return http_api.list_sagas(current_request().query_params)


@app.route("/sagas/stats", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def saga_stats() -> dict[str, Any]:
    return http_api.saga_stats(current_request().query_params)


@app.route("/sagas/{saga_id}", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def get_saga(saga_id: str) -> dict[str, Any]:
    return http_api.get_saga(saga_id)


@app.route("/sagas/{saga_id}/history", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def get_saga_history(saga_id: str) -> dict[str, Any]:
    return http_api.get_history(saga_id)


@app.route("/sagas/{saga_id}/view", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def view_saga(saga_id: str) -> Response:
    return http_api.view_page(saga_id)


@app.route("/console", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def console() -> Response:
    return http_api.console(current_request().query_params)


@app.route("/products", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def list_products() -> dict[str, Any]:
    return http_api.list_products()


@app.route("/products/{sku}", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def get_product(sku: str) -> dict[str, Any]:
    return http_api.get_product(sku)


@app.route("/openapi.json", methods=["GET"], authorizer=SIGNED, content_types=ANY_CONTENT)
def get_openapi() -> dict[str, Any]:
    return openapi_document()
