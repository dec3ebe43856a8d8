"""The template's functions on worker processes: what each gets from template.yaml, how an invocation answers
moto, and how a throttle reaches Step Functions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.engine.local_engine import load_template
from infra.engine.local_functions import (
    Configuration,
    LocalFunctions,
    ThrottledInvoke,
    function_config,
    resolve_parameter_refs,
)
from tests.helpers import ROOT

EVENT = {"saga_id": "0123456789abcdef0123456789abcdef", "sku": "SKU-MOUSE"}
LOCAL = {"DATABASE_URL": "sqlite:///local.db", "REDIS_URL": "redis://127.0.0.1:1/0", "AWS_DEFAULT_REGION": "us-east-1"}
FAKE_TEMPLATE: dict[str, Any] = {
    "Parameters": {"Concurrency": {"Type": "Number", "Default": 1}, "Host": {"Type": "String"}},
    "Globals": {
        "Function": {
            "Timeout": 5,
            "MemorySize": 256,
            "Environment": {"Variables": {"SHARED": "yes", "DATABASE_HOST": {"Ref": "Host"}, "LEVEL": "INFO"}},
        }
    },
    "Resources": {
        "Echo": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Handler": "functions.echo.lambda_handler",
                "Environment": {"Variables": {"LEVEL": "DEBUG"}},
            },
        },
        "Slow": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Handler": "functions.slow.lambda_handler",
                "ReservedConcurrentExecutions": {"Ref": "Concurrency"},
            },
        },
        "Api": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.app"}},
    },
}
FAKE_HANDLERS = {
    "functions.echo.lambda_handler": "tests.unit.fake_handlers.echo",
    "functions.slow.lambda_handler": "tests.unit.fake_handlers.slow",
}


@pytest.fixture
def functions() -> Iterator[LocalFunctions]:
    local = LocalFunctions(
        FAKE_TEMPLATE, str(ROOT), lambda: Configuration(dict(LOCAL)), handler_for=FAKE_HANDLERS.__getitem__
    )
    yield local
    local.close()


def test_literals_and_parameter_defaults_resolve_and_deployed_only_values_do_not() -> None:
    parameters = FAKE_TEMPLATE["Parameters"]

    assert resolve_parameter_refs("text", parameters) == "text"
    assert resolve_parameter_refs(7, parameters) == "7"
    assert resolve_parameter_refs({"Ref": "Concurrency"}, parameters) == "1"
    assert resolve_parameter_refs({"Ref": "Host"}, parameters) is None
    assert resolve_parameter_refs({"Fn::GetAtt": ["Db", "Endpoint.Address"]}, parameters) is None
    assert resolve_parameter_refs({"Ref": "Concurrency"}, parameters, {"Concurrency": "4"}) == "4"
    assert resolve_parameter_refs({"Ref": "Host"}, parameters, {"Host": "db.local"}) == "db.local"


def test_a_function_takes_globals_its_own_settings_and_this_machines_data_stores() -> None:
    config = function_config(FAKE_TEMPLATE, "Echo", "/code", LOCAL, timeout_override=None, handler_for=None)

    assert (config.name, config.handler, config.code_paths) == ("Echo", "functions.echo.lambda_handler", ["/code"])
    assert (config.timeout_seconds, config.memory_mb, config.reserved_concurrency) == (5.0, 256, None)
    assert config.environment == {
        "SHARED": "yes",
        "LEVEL": "DEBUG",
        "DATABASE_TLS": "false",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        **LOCAL,
    }


def test_local_lambda_timeout_replaces_every_timeout_and_reserved_concurrency_comes_from_its_parameter() -> None:
    config = function_config(FAKE_TEMPLATE, "Slow", "/code", LOCAL, timeout_override=2.5, handler_for=None)

    assert (config.timeout_seconds, config.reserved_concurrency) == (2.5, 1)


def test_the_project_template_gives_process_payment_its_reserved_concurrency_and_every_step_its_timeout() -> None:
    template = load_template()
    payment = function_config(template, "ProcessPaymentFunction", "/code", LOCAL, None, None)
    reserve = function_config(template, "ReserveStockFunction", "/code", LOCAL, None, None)

    assert payment.reserved_concurrency == int(template["Parameters"]["PaymentConcurrency"]["Default"])
    assert reserve.reserved_concurrency is None
    assert reserve.timeout_seconds == template["Globals"]["Function"]["Timeout"]
    assert reserve.environment["POWERTOOLS_SERVICE_NAME"] == "saga-orchestrator"
    assert reserve.environment["SAGA_ALLOW_FAULTS"] == "false"  # the template's; the engine's own settings win
    assert "DATABASE_HOST" not in reserve.environment  # its parameter has no default: only deployed stacks have one


def test_the_reconcilers_timeout_follows_its_period_through_the_templates_mapping() -> None:
    template = load_template()
    periods = template["Mappings"]["ReconcilePeriods"]

    default = function_config(template, "ReconcilerFunction", "/code", LOCAL, None, None)
    hourly = function_config(
        template, "ReconcilerFunction", "/code", LOCAL, None, None, {"ReconcilePeriodMinutes": "60"}
    )

    assert (
        default.timeout_seconds
        == periods[template["Parameters"]["ReconcilePeriodMinutes"]["Default"]]["TimeoutSeconds"]
    )
    assert hourly.timeout_seconds == periods["60"]["TimeoutSeconds"] == 900


def test_only_the_step_functions_run_on_workers_not_the_api(functions: LocalFunctions) -> None:
    assert functions.logical_ids == ["Echo", "Slow"]


@pytest.mark.parametrize("event", [json.dumps(EVENT), json.dumps(EVENT).encode(), EVENT, None], ids=repr)
def test_an_invocation_runs_in_a_worker_and_answers_json(functions: LocalFunctions, event: Any) -> None:
    payload, errored, logs = functions.invoke("Echo", event)

    answer = json.loads(payload)
    assert errored is False
    assert answer["event"] == (EVENT if event is not None else {})
    assert answer["function_name"] == "Echo"
    assert answer["level"] == "DEBUG"
    assert answer["time_left"] is True
    assert "REPORT RequestId:" in logs


def test_a_raised_error_is_answered_by_its_class_name(functions: LocalFunctions) -> None:
    payload, errored, _ = functions.invoke("Echo", {**EVENT, "fail": True})

    answer = json.loads(payload)
    assert errored is True
    assert (answer["errorType"], answer["errorMessage"]) == ("OutOfStock", "only 2 left of SKU-MOUSE")


def test_an_invocation_over_the_reserved_concurrency_is_refused_as_lambda_refuses_it(
    functions: LocalFunctions,
) -> None:
    holder = threading.Thread(target=lambda: functions.invoke("Slow", {"seconds": 4}))
    holder.start()
    refusals: list[ThrottledInvoke] = []
    try:
        # A loaded machine may delay the holder's thread: invoke only once it holds the only slot.
        deadline = time.monotonic() + 3
        while functions.runtime.concurrent_executions("Slow") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert functions.runtime.concurrent_executions("Slow") == 1, "the holder never took the reserved slot"
        try:
            functions.invoke("Slow", {"seconds": 0})
        except ThrottledInvoke as refused:
            refusals.append(refused)
    finally:
        holder.join()

    assert refusals, "no invocation was throttled while one held the only reserved slot"
    refused = refusals[0]
    assert refused.code == 429
    assert json.loads(refused.description) == {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "__type": "TooManyRequestsException",
    }


def test_a_changed_environment_replaces_the_workers_as_a_configuration_update_does() -> None:
    environment = dict(LOCAL)
    local = LocalFunctions(
        FAKE_TEMPLATE, str(ROOT), lambda: Configuration(dict(environment)), handler_for=FAKE_HANDLERS.__getitem__
    )
    try:
        first = json.loads(local.invoke("Echo", {})[0])
        environment["DATABASE_URL"] = "sqlite:///other.db"
        second = json.loads(local.invoke("Echo", {})[0])
    finally:
        local.close()

    assert (first["database_url"], second["database_url"]) == ("sqlite:///local.db", "sqlite:///other.db")
    assert first["pid"] != second["pid"]
