"""Property-based fuzz of the HTTP API from its own OpenAPI document (schemathesis), over real HTTP.

The Chalice app is served by chalice's LocalDevServer on a free loopback port in this process, with the local
engine behind it and the embedded backend. Every operation gets positive and negative requests; each answer must
not be a 5xx, must have a documented status code and content type, and its body must match the documented schema.
The embedded backend alone: the HTTP contract decides these checks, not the data layer.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from chalice.cli.factory import CLIFactory
from chalice.local import LocalChalice, LocalDevServer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from app import app
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.presentation.openapi import openapi_document
from infra.engine.local_engine import LocalEngine
from infra.engine.local_server import ApiHTTPServer
from tests.conftest import Backend

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 25

# The coverage phase also sends each path the methods it does not document. Left out: TRACE and QUERY, which never
# reach the app under chalice's local server (its handler has no do_TRACE/do_QUERY, so http.server answers 501).
UNEXPECTED_METHODS = ["get", "put", "post", "delete", "options", "patch"]
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"unexpected-methods": UNEXPECTED_METHODS}}})
SCHEMA = schemathesis.openapi.from_dict(copy.deepcopy(openapi_document()), config=CONFIG)


@pytest.fixture
def base_url(backend: Backend, engine: LocalEngine) -> Iterator[str]:
    """The app on a free loopback port, served from a daemon thread; sagas it started have ended on teardown."""
    config = CLIFactory(str(ROOT)).create_config_obj(chalice_stage_name="dev")
    server = LocalDevServer(app, config, HOST, 0, server_cls=ApiHTTPServer)  # port 0: the OS picks a free one
    thread = threading.Thread(target=server.server.serve_forever, name="fuzzed-api", daemon=True)
    original_class = app.__class__
    # As infra/engine/local_server.py does: LocalChalice keeps current_request per thread, for the threaded server.
    app.__class__ = type("FuzzedLocalChalice", (LocalChalice, original_class), {})
    try:
        thread.start()
        yield f"http://{HOST}:{server.server.server_address[1]}"
    finally:
        if thread.is_alive():
            server.shutdown()
            thread.join(timeout=10)
        server.server.server_close()
        app.__class__ = original_class
        _let_started_sagas_finish(engine)


def _let_started_sagas_finish(engine: LocalEngine) -> None:
    with database.UnitOfWork() as uow:
        arns = [arn for arn in uow.session.scalars(select(Saga.execution_arn)) if arn]
    for arn in arns:
        engine.wait(arn, timeout_seconds=60)


@pytest.fixture
def session(base_url: str) -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.mark.backends("embedded")
@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_documented_and_never_with_a_5xx(
    case: schemathesis.Case, base_url: str, session: requests.Session
) -> None:
    case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)


@pytest.mark.backends("embedded")
def test_a_get_with_a_stray_content_type_is_answered_with_a_documented_status(
    base_url: str, session: requests.Session
) -> None:
    undocumented = []
    for path, operations in openapi_document()["paths"].items():
        if "get" in operations:
            concrete = path.replace("{saga_id}", "0" * 32).replace("{sku}", "SKU-MOUSE")
            response = session.get(f"{base_url}{concrete}", headers={"Content-Type": "text/plain"}, timeout=10)
            if str(response.status_code) not in operations["get"]["responses"]:
                undocumented.append(f"GET {concrete} -> {response.status_code} {response.text}")

    assert undocumented == []
