"""Logs, metrics and traces of real sagas: what an operator reads in CloudWatch Logs, metrics and X-Ray.

Logs and metrics come from the functions' worker processes, as CloudWatch Logs gets them from Lambda. The trace
tests call a handler in this process, with an in-memory X-Ray emitter: they test what the code traces, not
how the runtime ships it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.context import Context
from chalice.test import Client

from app import app
from chalicelib.observability import telemetry
from chalicelib.observability.metric_names import METRICS, NAMESPACE, SERVICE
from chalicelib.service import sagas
from functions import reserve_stock
from infra.engine.local_engine import LocalEngine
from infra.tools import samples
from tests.conftest import Backend
from tests.helpers import FunctionLogs, emf_records, finish, lambda_context, metric_counts, purchase, run_saga

pytestmark = pytest.mark.backends("postgres")
"""Logs, metrics and traces are written by the telemetry module whatever the database; the one test whose
outcome the engine decides (SQL subsegments are named after it) runs on all three. Otherwise one backend:
PostgreSQL, the deployed default."""

JSON = {"Content-Type": "application/json"}


class LogLines:
    """What the Powertools logger writes, in its own JSON format, while the test runs: in this process (the API)
    and in the functions' workers (the steps)."""

    def __init__(self, here: io.StringIO, functions: FunctionLogs) -> None:
        self.here, self.functions = here, functions

    def getvalue(self) -> str:
        return self.here.getvalue() + "\n" + self.functions.getvalue()


@pytest.fixture
def log_lines(function_logs: FunctionLogs) -> Iterator[LogLines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.logger.registered_formatter)
    underlying = logging.getLogger(SERVICE)
    underlying.addHandler(handler)
    yield LogLines(stream, function_logs)
    underlying.removeHandler(handler)


def _records(stream: LogLines, **match: Any) -> list[dict[str, Any]]:
    """The JSON log records (a function's log stream also holds Lambda's START, END and REPORT lines)."""
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    records = [record for record in records if "_aws" not in record]
    return [record for record in records if all(record.get(key) == value for key, value in match.items())]


def test_every_step_logs_one_json_line_with_the_saga_keys_and_the_api_correlation_id(
    backend: Backend, engine: LocalEngine, log_lines: LogLines
) -> None:
    with Client(app) as client:
        body = {"customer_id": "c-log", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": "tok_flaky"}
        response = client.http.post("/purchases", headers=JSON | {"X-Correlation-Id": "corr-42"}, body=json.dumps(body))
        assert response.status_code == 202
        assert response.headers["X-Correlation-Id"] == "corr-42"
        saga_id = response.json_body["saga_id"]
    assert finish(engine, saga_id).status == "COMPLETED"  # the execution, and so every step's log line, ended

    steps = [
        (record["step"], record["attempt"], record["message"])
        for record in _records(log_lines, saga_id=saga_id)
        if record["message"].startswith("step ")
    ]
    assert steps == [
        ("reserve_stock", 1, "step succeeded"),
        ("process_payment", 1, "step failed"),
        ("process_payment", 2, "step succeeded"),
        ("confirm_sale", 1, "step succeeded"),
    ]
    for record in _records(log_lines, saga_id=saga_id):
        assert record["service"] == SERVICE
        assert record["correlation_id"] == "corr-42"
        assert record["saga_type"] == "purchase"
        assert record["level"] in {"INFO", "WARNING"}
        assert "function_request_id" in record
    failed = _records(log_lines, saga_id=saga_id, message="step failed")[0]
    assert failed["error_type"] == "PaymentProviderUnavailable"
    fresh = samples.step_log_lines(log_lines.getvalue(), correlation_id="corr-42")
    recorded = samples.read("log_lines").output
    assert samples.normalised("log_lines", fresh) == samples.normalised("log_lines", recorded), (
        "docs/samples/log_lines.txt is stale: run `make docs`"
    )
    assert _records(log_lines, saga_id=saga_id, message="saga ended")[0]["outcome"] == "COMPLETED"
    answered = _records(log_lines, message="request answered", correlation_id="corr-42")
    assert [(r["method"], r["path"], r["status_code"], r["started_saga_id"]) for r in answered] == [
        ("POST", "/purchases", 202, saga_id)
    ]


def test_a_start_that_waited_for_its_outcome_logs_the_saga_it_started(
    backend: Backend, engine: LocalEngine, log_lines: LogLines
) -> None:
    body = {"customer_id": "c-log", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": "tok_visa"}
    with Client(app) as client:
        headers = JSON | {"X-Correlation-Id": "corr-wait", "Prefer": "wait=20"}
        response = client.http.post("/purchases", headers=headers, body=json.dumps(body))

    assert response.status_code == 200
    answered = _records(log_lines, message="request answered", correlation_id="corr-wait")
    assert [(r["status_code"], r["started_saga_id"]) for r in answered] == [(200, response.json_body["saga_id"])]


def test_a_retried_saga_s_steps_carry_the_retry_request_s_correlation_id(
    backend: Backend, engine: LocalEngine, log_lines: LogLines
) -> None:
    body = {
        "customer_id": "c-retry",
        "sku": "SKU-MOUSE",
        "quantity": 1,
        "payment_token": "tok_visa",
        "faults": {"process_payment": "fail", "release_stock": "fail"},
    }
    with Client(app) as client:
        started = client.http.post("/purchases", headers=JSON | {"X-Correlation-Id": "first"}, body=json.dumps(body))
        saga_id = started.json_body["saga_id"]
        assert finish(engine, saga_id).status == "FAILED"
        retried = client.http.post(f"/sagas/{saga_id}/retry", headers={"X-Correlation-Id": "second"})
        assert retried.status_code == 202
    assert finish(engine, saga_id).status == "FAILED"  # the fault is still in the request: it fails again

    def steps_under(correlation_id: str) -> set[str]:
        records = _records(log_lines, saga_id=saga_id, correlation_id=correlation_id)
        return {record["step"] for record in records if "step" in record}

    assert steps_under("first") == {
        "reserve_stock",
        "process_payment",
        "refund_payment",
        "release_stock",
        "compensation_failed",
    }
    assert steps_under("second") >= {"refund_payment", "release_stock", "compensation_failed"}


def test_a_bad_correlation_header_is_replaced_by_the_request_id(backend: Backend, log_lines: LogLines) -> None:
    with Client(app) as client:
        response = client.http.get("/products", headers={"X-Correlation-Id": "not an id\u00e9"})
    correlation = response.headers["X-Correlation-Id"]
    assert correlation and correlation != "not an id\u00e9"
    assert _records(log_lines, message="request answered", correlation_id=correlation)


@pytest.mark.parametrize(
    ("request_faults", "token", "outcome", "expected"),
    [
        (
            {},
            "tok_declined",
            "COMPENSATED",
            {("StepFailures", "process_payment"): 1, ("CompensationsRun", "release_stock"): 1},
        ),
        (
            {"process_payment": "fail", "refund_payment": "fail"},
            "tok_visa",
            "FAILED",
            {
                ("StepFailures", "process_payment"): 1,
                ("StepFailures", "refund_payment"): 6,
                ("CompensationsFailed", "refund_payment"): 1,
            },
        ),
    ],
)
def test_metrics_are_emf_records_with_the_catalogued_names_units_and_dimensions(
    backend: Backend,
    engine: LocalEngine,
    metrics_on: None,
    capsys: pytest.CaptureFixture[str],
    function_logs: FunctionLogs,
    request_faults: dict[str, str],
    token: str,
    outcome: str,
    expected: dict[tuple[str, str], int],
) -> None:
    capsys.readouterr()
    run = run_saga(engine, purchase(token=token, **request_faults))
    assert run.status == outcome
    blobs = emf_records(capsys.readouterr().out + function_logs.getvalue())  # the API's records, then the steps'

    for blob in blobs:
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == NAMESPACE
        assert blob["service"] == SERVICE
        for metric in directive["Metrics"]:
            unit, dimensions = METRICS[metric["Name"]]
            assert metric["Unit"] == unit
            assert [sorted(names) for names in directive["Dimensions"]] == [sorted(dimensions)]
            [value] = blob[metric["Name"]]  # EMF values are lists
            assert value > 0 if metric["Name"] == "StepLatency" else value == 1

    counts = metric_counts(blobs, run.saga_id)
    assert counts[("SagasStarted", "purchase")] == 1
    assert counts[("SagasEnded", "purchase", outcome)] == 1
    assert sum(n for key, n in counts.items() if key[0] == "SagasEnded") == 1
    for (metric, step), number in expected.items():
        assert counts[(metric, step)] == number, (metric, step, counts)
    attempts = sum(attempt for state, attempt in run.path if attempt)
    assert sum(n for key, n in counts.items() if key[0] == "StepLatency") == attempts
    failures = sum(n for key, n in counts.items() if key[0] == "StepFailures")
    assert failures == sum(number for (metric, _), number in expected.items() if metric == "StepFailures")


def test_rejected_sagas_count_as_ended_rejected(
    backend: Backend,
    engine: LocalEngine,
    metrics_on: None,
    capsys: pytest.CaptureFixture[str],
    function_logs: FunctionLogs,
) -> None:
    capsys.readouterr()
    run = run_saga(engine, purchase(sku="SKU-NOPE"))
    assert run.status == "REJECTED"
    counts = metric_counts(emf_records(capsys.readouterr().out + function_logs.getvalue()), run.saga_id)
    assert counts[("SagasEnded", "purchase", "REJECTED")] == 1
    assert counts[("StepFailures", "reserve_stock")] == 1


class CapturedSegments:
    """An X-Ray emitter that keeps what it would send to the daemon."""

    def __init__(self) -> None:
        self.entities: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.entities.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        pass

    def start_saga(self, correlation_id: str | None = None) -> str:
        """A saga recorded as started, under a segment of its own that is then forgotten."""
        xray_recorder.begin_segment("setup")
        try:
            saga = sagas.start_saga(purchase(), lambda _type, name, _input: f"arn:test:{name}", None, correlation_id)
        finally:
            xray_recorder.end_segment()
        self.entities.clear()
        return saga.id

    def tree(self) -> dict[str, Any]:
        """The one segment sent, with its subsegments nested (X-Ray may stream finished ones separately)."""
        by_id = {entity["id"]: entity for entity in self.entities}
        for entity in self.entities:
            for child in entity.get("subsegments", []):
                by_id.setdefault(child["id"], child)
        roots = [entity for entity in self.entities if entity.get("type") != "subsegment"]
        assert len(roots) == 1, [entity["name"] for entity in self.entities]
        for entity in self.entities:
            if entity.get("type") == "subsegment":
                parent = by_id[entity["parent_id"]]
                siblings = parent.setdefault("subsegments", [])
                if all(sibling["id"] != entity["id"] for sibling in siblings):
                    siblings.append(entity)
        return roots[0]


@pytest.fixture
def captured_traces(monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedSegments]:
    """Tracing on as in Lambda, with segments kept in memory instead of sent to a daemon."""
    captured = CapturedSegments()
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    xray_recorder.configure(
        context=Context(context_missing="RUNTIME_ERROR"), emitter=captured, sampling=False, streaming_threshold=10_000
    )
    telemetry.reset_tracer()
    assert telemetry.tracer() is not None
    yield captured
    telemetry.reset_tracer()
    xray_recorder.configure(context=Context(context_missing="LOG_ERROR"))


def _subsegments(entity: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for child in entity.get("subsegments", []):
        yield child
        yield from _subsegments(child)


@pytest.mark.backends("embedded", "postgres", "mysql")
def test_a_step_is_traced_with_database_and_redis_subsegments_annotated_with_the_saga_id(
    backend: Backend, captured_traces: CapturedSegments
) -> None:
    saga_id = captured_traces.start_saga(correlation_id="corr-7")
    xray_recorder.begin_segment("reserve_stock-invocation")
    try:
        event = {"saga_id": saga_id, "retry_count": 0, "correlation_id": "corr-7"}
        reserve_stock.lambda_handler(event, lambda_context())
    finally:
        xray_recorder.end_segment()

    segment = captured_traces.tree()
    [step] = [sub for sub in segment["subsegments"] if sub["name"] == "## reserve_stock"]
    assert step["annotations"] == {"saga_id": saga_id, "correlation_id": "corr-7"}
    inner = list(_subsegments(step))
    database = {"embedded": "sqlite", "postgres": "postgresql", "mysql": "mysql"}[backend.name]
    queries = [sub for sub in inner if sub["name"] == database]
    redis_calls = [sub for sub in inner if sub["name"] == "redis"]
    assert queries and redis_calls, [sub["name"] for sub in inner]
    assert {sub["name"] for sub in inner} == {database, "redis"}
    for sub in queries + redis_calls:
        assert sub["namespace"] == "remote"
        assert sub["annotations"]["saga_id"] == saga_id
        assert sub["end_time"] >= sub["start_time"]
    assert any("UPDATE stock_buckets" in sub["sql"]["sanitized_query"] for sub in queries)
    assert all("password" not in json.dumps(sub["sql"]) for sub in queries)
    operations = [sub["metadata"][SERVICE]["operation"] for sub in redis_calls]
    assert "idempotency put" in operations and "cache status" in operations


def test_an_api_request_is_traced_under_its_route(backend: Backend, captured_traces: CapturedSegments) -> None:
    saga_id = captured_traces.start_saga()
    xray_recorder.begin_segment("api-invocation")
    try:
        with Client(app) as client:
            assert client.http.get(f"/sagas/{saga_id}").status_code == 200
    finally:
        xray_recorder.end_segment()

    segment = captured_traces.tree()
    [route] = segment["subsegments"]
    assert route["name"] == "## GET /sagas/{saga_id}"
    assert route["annotations"]["saga_id"] == saga_id
    assert {sub["name"] for sub in _subsegments(route)} >= {"redis"}


def test_tracing_is_off_outside_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    telemetry.reset_tracer()
    assert telemetry.tracer() is None
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    telemetry.reset_tracer()
    assert telemetry.tracer() is None
    telemetry.reset_tracer()
