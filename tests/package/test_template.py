"""template.yaml as a deployable stack: least privilege, alarms, and what `make package` makes of it."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.local_engine import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

UNSCOPABLE_ACTIONS = {
    # CloudWatch Logs delivery for Step Functions and X-Ray accept no resource but "*" (AWS documents this).
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement written in the template: role policies and SAM `Policies` statements."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for policy in properties.get("Policies", []) if isinstance(properties.get("Policies"), list) else []:
            document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else {}
            for statement in document.get("Statement", []):
                yield name, statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _assert_least_privilege(template: dict[str, Any]) -> None:
    statements = list(_statements(template))
    assert statements
    for name, statement in statements:
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), (name, actions)
        if "*" in _as_list(statement["Resource"]):
            assert set(actions) <= UNSCOPABLE_ACTIONS, (name, actions)


def test_no_iam_statement_grants_a_wildcard_action_or_an_avoidable_wildcard_resource() -> None:
    _assert_least_privilege(TEMPLATE)


def test_each_state_machine_may_invoke_only_its_own_steps() -> None:
    for machine in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine"):
        properties = RESOURCES[machine]["Properties"]
        invocable = {
            p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in properties["Policies"] if "LambdaInvokePolicy" in p
        }
        referenced = {v["Fn::GetAtt"][0] for v in properties["DefinitionSubstitutions"].values()}
        assert invocable == referenced
        assert properties["Logging"]["Level"] == "ALL" and properties["Logging"]["IncludeExecutionData"]
        assert properties["Tracing"] == {"Enabled": True}
        assert properties["Type"] == {"Ref": "StateMachineType"}


def test_the_api_may_start_and_read_only_the_two_state_machines() -> None:
    role = RESOURCES["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    start = next(s for s in role if s["Action"] == "states:StartExecution")
    assert start["Resource"] == [{"Ref": "PurchaseSagaStateMachine"}, {"Ref": "ReturnSagaStateMachine"}]
    assert {json.dumps(s["Action"]) for s in role} == {
        '"states:StartExecution"',
        '["states:DescribeExecution", "states:GetExecutionHistory"]',
        '"secretsmanager:GetSecretValue"',
    }


def test_no_secret_is_in_the_template_and_faults_are_off() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SAGA_ALLOW_FAULTS"] == "false"
    assert not any(word in key for key in variables for word in ("PASSWORD", "TOKEN", "DATABASE_URL", "REDIS_URL"))
    assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert variables["DATABASE_TLS"] == "true"


def test_alarms_cover_failed_executions_failed_sagas_lambda_errors_and_throttles() -> None:
    alarms = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {a.get("MetricName") for a in alarms.values()} | {
        m["MetricStat"]["Metric"]["MetricName"]
        for a in alarms.values()
        for m in a.get("Metrics", [])
        if "MetricStat" in m
    }
    assert {"ExecutionsFailed", "FailedSagas", "Errors", "Throttles"} <= metrics
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    step_errors = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for m in alarms["StepErrorsAlarm"]["Metrics"]
        if "MetricStat" in m
    }
    steps = {
        v["Fn::GetAtt"][0]
        for m in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine")
        for v in RESOURCES[m]["Properties"]["DefinitionSubstitutions"].values()
    }
    assert step_errors == steps


def test_the_payment_step_has_reserved_concurrency() -> None:
    assert RESOURCES["ProcessPaymentFunction"]["Properties"]["ReservedConcurrentExecutions"] == {
        "Ref": "PaymentConcurrency"
    }


def test_package_output_is_least_privilege_and_every_route_needs_a_signed_request(packaged: Path) -> None:
    generated = load_template(packaged / "sam.yaml")
    _assert_least_privilege(generated)
    body = generated["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    routes = {(path, method): spec for path, methods in body["paths"].items() for method, spec in methods.items()}
    assert len(routes) == 10
    for route, spec in routes.items():
        assert spec["security"] == [{"sigv4": []}], route
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert generated["Resources"]["APIHandler"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    for name in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine"):
        uri = generated["Resources"][name]["Properties"]["DefinitionUri"]
        assert (packaged / uri).is_file()


def test_every_handler_of_the_package_imports_from_the_artifact_alone(packaged: Path, tmp_path: Path) -> None:
    generated = load_template(packaged / "sam.yaml")
    handlers = sorted(
        r["Properties"]["Handler"] for r in generated["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
    )
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        archive.extractall(tmp_path)
    probe = (
        "import importlib, sys\n"
        "for handler in sys.argv[1:]:\n"
        "    module, _, name = handler.rpartition('.')\n"
        "    assert callable(getattr(importlib.import_module(module), name)), handler\n"
        "print('imported', len(sys.argv) - 1)\n"
    )
    # -S: no site-packages, so only the artifact (and the standard library) can satisfy the imports.
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, *handlers],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"imported {len(handlers)}"
    assert len(handlers) == 12


def test_every_function_of_the_packaged_stack_logs_to_a_group_that_keeps_log_retention_days(packaged: Path) -> None:
    stack = load_template(packaged / "sam.yaml")["Resources"]
    functions = {name for name, resource in stack.items() if resource["Type"] == "AWS::Serverless::Function"}
    groups = {
        resource["Properties"]["LogGroupName"]["Fn::Sub"]: resource["Properties"]
        for resource in stack.values()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }

    for function in functions:
        group = groups.get(f"/aws/lambda/${{{function}}}")
        assert group is not None, f"{function} would log to a group Lambda makes, kept forever"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, function
