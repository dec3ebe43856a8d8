"""template.yaml as a deployable stack: least privilege, alarms, and what `make package` makes of it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from app import app
from chalicelib.entrypoints import scheduled
from chalicelib.settings import Settings
from infra.engine.local_engine import load_template
from tests.template_refs import function_substitutions, invoked_function

ROOT = Path(__file__).resolve().parents[2]
PYENV_ROOT = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
TEMPLATE = load_template(ROOT / "template.yaml")
LAMBDA_MAX_TIMEOUT_SECONDS = 900
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
SMALLEST_START_REFILL = 150
"""StartExecution calls a second Step Functions refills outside us-east-1, us-west-2 and eu-west-1 (design §7.2)."""

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
        referenced = {invoked_function(v) for v in function_substitutions(properties).values()}
        assert invocable == referenced
        assert properties["Logging"]["Level"] == "ALL" and properties["Logging"]["IncludeExecutionData"]
        assert properties["Tracing"] == {"Enabled": True}
        assert properties["Type"] == "STANDARD"


@pytest.mark.parametrize("role", ["ApiHandlerRole", "ReconcilerRole", "BulkRetryRole"])
def test_the_api_the_reconciler_and_the_bulk_retries_may_start_and_describe_only_the_two_machines_executions(
    role: str,
) -> None:
    statements = RESOURCES[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    start = next(s for s in statements if s["Action"] == "states:StartExecution")
    describe = next(s for s in statements if s["Action"] == "states:DescribeExecution")
    assert start["Resource"] == [{"Ref": "PurchaseSagaStateMachine"}, {"Ref": "ReturnSagaStateMachine"}]
    assert all(":execution:${" in resource["Fn::Sub"] for resource in describe["Resource"])
    # Nothing reads an execution's history: Step Functions keeps it for 90 days, the audit log for good.
    assert {s["Action"] for s in statements} == {
        "states:StartExecution",
        "states:DescribeExecution",
        "secretsmanager:GetSecretValue",
    }


def test_no_secret_is_in_the_template_and_faults_are_off_and_tls_on_unless_a_parameter_says_so() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    parameters = TEMPLATE["Parameters"]
    assert variables["SAGA_ALLOW_FAULTS"] == {"Ref": "AllowFaults"}
    assert parameters["AllowFaults"]["Default"] == "false"
    assert not any(word in key for key in variables for word in ("PASSWORD", "TOKEN", "DATABASE_URL", "REDIS_URL"))
    assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert variables["DATABASE_TLS"] == variables["REDIS_TLS"] == {"Ref": "DataStoreTls"}
    assert parameters["DataStoreTls"]["Default"] == "true"


@pytest.mark.parametrize(
    ("engine", "url_start"),
    [
        ("postgresql", "postgresql+pg8000://saga:pw@proxy.local:5432/"),
        ("mysql", "mysql+pymysql://saga:pw@proxy.local:3306/"),
    ],
)
def test_the_database_engine_parameter_chooses_the_url_the_functions_build(
    engine: str, url_start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert TEMPLATE["Parameters"]["DatabaseEngine"]["AllowedValues"] == ["postgresql", "mysql"]
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DATABASE_ENGINE"] == {"Ref": "DatabaseEngine"}
    [compared, mysql] = TEMPLATE["Conditions"]["UsesMySql"]["Fn::Equals"]
    assert compared == {"Ref": "DatabaseEngine"}
    condition, on_mysql, otherwise = variables["DATABASE_PORT"]["Fn::If"]
    assert condition == "UsesMySql"
    secret = json.dumps({"username": "saga", "password": "pw"})  # Secrets Manager's SecretString, as it is stored
    monkeypatch.setattr(parameters, "get_secret", lambda *_, **__: secret)

    deployed = Settings(
        DATABASE_ENGINE=engine,
        DATABASE_HOST="proxy.local",
        DATABASE_PORT=on_mysql if engine == mysql else otherwise,
        DATABASE_SECRET_ARN="arn:db",
    )

    assert deployed.effective_database_url.startswith(url_start)


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
        invoked_function(v)
        for m in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine")
        for v in function_substitutions(RESOURCES[m]["Properties"]).values()
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
    assert set(routes) == {(path, method.lower()) for path, entries in app.routes.items() for method in entries}
    for route, spec in routes.items():
        assert spec["security"] == [{"sigv4": []}], route
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert generated["Resources"]["APIHandler"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    for name in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine"):
        uri = generated["Resources"][name]["Properties"]["DefinitionUri"]
        assert (packaged / uri).is_file()


def lambda_python(runtime: str) -> Path:
    """The interpreter of Lambda's `runtime` on this machine (pyenv's), to import the package as Lambda would."""
    version = runtime.removeprefix("python")
    found = sorted(Path(PYENV_ROOT).glob(f"versions/{version}.*/bin/python{version}"))
    assert found, f"no Python {version} under {PYENV_ROOT}: pyenv install {version}"
    return found[-1]


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every function of the template, with the Globals merged under its own properties, as SAM merges them."""
    defaults = template["Globals"]["Function"]
    return {
        name: {**defaults, **resource["Properties"]}
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_handler_of_the_package_imports_from_the_artifact_alone_on_the_lambda_runtime(
    packaged: Path, tmp_path: Path
) -> None:
    functions = _functions(load_template(packaged / "sam.yaml"))
    [runtime] = {properties["Runtime"] for properties in functions.values()}
    handlers = sorted(properties["Handler"] for properties in functions.values())
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        archive.extractall(tmp_path)
    probe = (
        "import importlib, sys\n"
        "for handler in sys.argv[1:]:\n"
        "    module, _, name = handler.rpartition('.')\n"
        "    assert callable(getattr(importlib.import_module(module), name)), handler\n"
        "print('imported', len(sys.argv) - 1, 'on', sys.version.split()[0])\n"
    )
    # -S: no site-packages, so only the artifact (and the standard library) can satisfy the imports.
    done = subprocess.run(
        [str(lambda_python(runtime)), "-S", "-c", probe, *handlers],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"imported {len(handlers)} on {runtime.removeprefix('python')}.")
    # Every function of template.yaml (the API's among them), each with a handler of its own.
    assert (
        len(set(handlers)) == len(handlers) == sum(r["Type"] == "AWS::Serverless::Function" for r in RESOURCES.values())
    )


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


def test_every_function_runs_one_python_of_3_12_or_newer_behind_the_alias_live(packaged: Path) -> None:
    functions = _functions(load_template(packaged / "sam.yaml"))

    runtimes = {properties["Runtime"] for properties in functions.values()}
    assert len(runtimes) == 1
    [runtime] = runtimes
    assert tuple(int(part) for part in runtime.removeprefix("python").split(".")) >= (3, 12)
    assert {properties["AutoPublishAlias"] for properties in functions.values()} == {"live"}
    assert {tuple(properties["Architectures"]) for properties in functions.values()} == {("x86_64",)}


def test_api_gateway_invokes_the_api_function_s_alias(packaged: Path) -> None:
    resources = load_template(packaged / "sam.yaml")["Resources"]
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    uris = [op["x-amazon-apigateway-integration"]["uri"] for methods in paths.values() for op in methods.values()]

    assert uris and all(uri["Fn::Sub"][1] == {"FunctionAlias": {"Ref": "APIHandler.Alias"}} for uri in uris)
    assert all("${FunctionAlias}" in uri["Fn::Sub"][0] for uri in uris)
    assert resources["APIHandlerInvokePermission"]["Properties"]["FunctionName"] == {"Ref": "APIHandler.Alias"}


def test_the_state_machines_are_published_behind_an_alias_that_alarms_roll_back_and_sagas_start_on_it() -> None:
    for machine in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine"):
        properties = RESOURCES[machine]["Properties"]
        preference = properties["DeploymentPreference"]
        alias = f"{machine}Alias{properties['AutoPublishAlias']}"

        assert preference["Type"] in ("CANARY", "LINEAR")
        assert 0 < preference["Percentage"] < 100 and preference["Interval"] >= 1
        assert preference["Alarms"] == [{"Ref": machine.replace("StateMachine", "DefinitionFaultsAlarm")}]
        for starter in ("APIHandler", "ReconcilerFunction", "BulkRetryFunction"):
            variables = RESOURCES[starter]["Properties"]["Environment"]["Variables"]
            # SagasStartOnAlias=false only where state machine aliases cannot be made (LocalStack).
            assert {"Fn::If": ["StartsOnAlias", {"Ref": alias}, {"Ref": machine}]} in variables.values(), starter
    assert TEMPLATE["Parameters"]["SagasStartOnAlias"]["Default"] == "true"


@pytest.mark.parametrize(
    ("machine", "saga_type"), [("PurchaseSagaStateMachine", "purchase"), ("ReturnSagaStateMachine", "return")]
)
def test_the_packaged_canary_rolls_back_on_faults_of_the_definition_it_ships_only(
    packaged: Path, machine: str, saga_type: str
) -> None:
    resources = load_template(packaged / "sam.yaml")["Resources"]
    properties = resources[machine]["Properties"]
    shipped = packaged / properties["DefinitionUri"]
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()[:12]
    [alarm] = [resources[ref["Ref"]]["Properties"] for ref in properties["DeploymentPreference"]["Alarms"]]

    assert (alarm["Namespace"], alarm["MetricName"]) == ("SagaOrchestrator", "DefinitionFaults")
    assert {(d["Name"], d["Value"]) for d in alarm["Dimensions"]} == {
        ("service", "saga-orchestrator"),
        ("SagaType", saga_type),
        ("Definition", digest),
    }
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert properties["DefinitionSubstitutions"]["DefinitionDigest"] == digest
    tasks = [s for s in json.loads(shipped.read_text())["States"].values() if s["Type"] == "Task"]
    assert tasks and all(t["Parameters"]["Payload"]["definition"] == "${DefinitionDigest}" for t in tasks)
    # ExecutionsFailed counts business FAILED sagas and the old version's executions: it alarms the topic only.
    failed_alarm = resources[machine.replace("StateMachine", "ExecutionsFailedAlarm")]["Properties"]
    assert failed_alarm["MetricName"] == "ExecutionsFailed" and failed_alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_packaged_definitions_have_a_timeout_on_every_task(packaged: Path) -> None:
    for definition in sorted((packaged / "statemachines").glob("*.asl.json")):
        states = json.loads(definition.read_text())["States"]
        tasks = [state for state in states.values() if state["Type"] == "Task"]
        assert tasks and all(state.get("TimeoutSeconds", 0) > 0 for state in tasks), definition.name


def test_the_reconciler_runs_on_a_schedule_one_pass_at_a_time_with_an_alarm_when_sagas_stay_stuck(
    packaged: Path,
) -> None:
    generated = load_template(packaged / "sam.yaml")
    reconciler = generated["Resources"]["ReconcilerFunction"]["Properties"]
    [schedule] = reconciler["Events"].values()
    alarm = generated["Resources"]["SagasStayStuckAlarm"]["Properties"]

    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["ScheduleExpression"] == {"Fn::Sub": "rate(${ReconcilePeriodMinutes} minutes)"}
    assert schedule["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-reconciler"}
    assert reconciler["Handler"] == "functions.reconcile.lambda_handler"
    assert reconciler["ReservedConcurrentExecutions"] == 1
    assert (alarm["MetricName"], alarm["Statistic"]) == ("StuckSagasFound", "Minimum")
    assert alarm["Period"] == {"Fn::FindInMap": ["ReconcilePeriods", {"Ref": "ReconcilePeriodMinutes"}, "Seconds"]}
    periods = generated["Mappings"]["ReconcilePeriods"]
    assert {int(minutes) * 60 for minutes in periods} == {entry["Seconds"] for entry in periods.values()}
    assert set(periods) == set(generated["Parameters"]["ReconcilePeriodMinutes"]["AllowedValues"])
    # A pass drains until MARGIN_SECONDS before its timeout, and ends before the next one is due.
    assert reconciler["Timeout"] == {
        "Fn::FindInMap": ["ReconcilePeriods", {"Ref": "ReconcilePeriodMinutes"}, "TimeoutSeconds"]
    }
    for entry in periods.values():
        assert scheduled.MARGIN_SECONDS < entry["TimeoutSeconds"] < entry["Seconds"], entry
        assert entry["TimeoutSeconds"] <= LAMBDA_MAX_TIMEOUT_SECONDS, entry
    variables = reconciler["Environment"]["Variables"]
    assert variables["RECONCILER_START_RATE"] == {"Ref": "ReconcilerStartRate"}
    assert variables["RECONCILER_DESCRIBE_RATE"] == {"Ref": "ReconcilerDescribeRate"}


def test_the_bulk_retries_worker_polls_every_minute_one_at_a_time_within_its_rate_and_alarms_when_it_fails() -> None:
    worker = RESOURCES["BulkRetryFunction"]["Properties"]
    [schedule] = worker["Events"].values()
    alarm = RESOURCES["BulkRetryErrorsAlarm"]["Properties"]
    rate = TEMPLATE["Parameters"]["BulkRetryStartRate"]

    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert worker["Handler"] == "functions.bulk_retry.lambda_handler"
    assert worker["ReservedConcurrentExecutions"] == 1
    # A busy worker's next invocation is dropped within a minute, not queued for Lambda's default 6 hours.
    assert worker["EventInvokeConfig"] == {"MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0}
    assert scheduled.MARGIN_SECONDS < worker["Timeout"] <= LAMBDA_MAX_TIMEOUT_SECONDS
    variables = worker["Environment"]["Variables"]
    assert variables["BULK_RETRY_START_RATE"] == {"Ref": "BulkRetryStartRate"}
    # Which stuck sagas it retries depends on the grace period the reconciler keeps.
    assert variables["RECONCILER_GRACE_SECONDS"] == {"Ref": "ReconcilerGraceSeconds"}
    assert rate["Default"] == Settings.model_fields["bulk_retry_start_rate"].default
    assert rate["Default"] + TEMPLATE["Parameters"]["ReconcilerStartRate"]["Default"] <= SMALLEST_START_REFILL / 2
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "BulkRetryFunction"}}]


def test_a_custom_resource_migrates_the_database_before_any_other_function_takes_its_new_code(packaged: Path) -> None:
    resources = load_template(packaged / "sam.yaml")["Resources"]
    migration = resources["DatabaseMigration"]

    assert migration["Type"] == "AWS::CloudFormation::CustomResource"
    assert migration["Properties"]["ServiceToken"] == {"Ref": "MigrateFunction.Alias"}
    # A new version of the migration's code changes this property: every deploy that brings one migrates.
    assert migration["Properties"]["MigrateFunctionVersion"] == {"Ref": "MigrateFunction.Version"}
    assert migration["Properties"]["ServiceTimeout"] > resources["MigrateFunction"]["Properties"]["Timeout"]
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function" and name != "MigrateFunction":
            assert resource.get("DependsOn") == "DatabaseMigration", name


CLIENT_ROUTES = {("POST", "/purchases"), ("POST", "/returns"), ("GET", "/sagas/{saga_id}")}
SAMPLE_PARAMETERS = {"{saga_id}": "0123456789abcdef0123456789abcdef", "{sku}": "SKU-MOUSE"}


def _invocable(policy: dict[str, Any], method: str, path: str) -> bool:
    """Whether the policy lets its holder invoke `method path` of the API's stage, as IAM matches execute-api ARNs
    (`*` any run of characters, `/` included; `?` one character)."""
    for parameter, sample in SAMPLE_PARAMETERS.items():
        path = path.replace(parameter, sample)
    request = f"arn:aws:execute-api:eu-west-1:123456789012:a1b2c3/api/{method}{path}"
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
        for resource in statement["Resource"]:
            arn = (
                resource["Fn::Sub"]
                .replace("${AWS::Partition}", "aws")
                .replace("${AWS::Region}", "eu-west-1")
                .replace("${AWS::AccountId}", "123456789012")
                .replace("${RestAPI}", "a1b2c3")
            )
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in arn)
            if re.fullmatch(pattern, request):
                return True
    return False


def test_clients_may_start_sagas_and_read_one_by_id_and_operators_may_use_every_route(packaged: Path) -> None:
    generated = load_template(packaged / "sam.yaml")
    resources = generated["Resources"]
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    routes = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    client, operator = resources["SagaClientPolicy"], resources["SagaOperatorPolicy"]

    assert client["Type"] == operator["Type"] == "AWS::IAM::ManagedPolicy"
    assert routes > CLIENT_ROUTES
    assert {route for route in routes if _invocable(client, *route)} == CLIENT_ROUTES
    assert all(_invocable(operator, *route) for route in routes)
    for below in ("/history", "/view", "/retry", "/resolve", "/cancel"):
        assert not _invocable(client, "GET", "/sagas/{saga_id}" + below)
        assert not _invocable(client, "POST", "/sagas/{saga_id}" + below)
    client_arns = [
        resource["Fn::Sub"] for resource in client["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]
    ]
    assert all("${RestAPI}/api/" in arn and "*" not in arn for arn in client_arns), "named routes of this API only"
    assert {"SagaClientPolicyArn", "SagaOperatorPolicyArn"} <= set(generated["Outputs"])
    assert generated["Outputs"]["SagaClientPolicyArn"]["Value"] == {"Ref": "SagaClientPolicy"}
    assert generated["Outputs"]["SagaOperatorPolicyArn"]["Value"] == {"Ref": "SagaOperatorPolicy"}
