"""The whole packaged stack on host-mode LocalStack, without Docker (docs/design.md §7.4).

`make package`'s output is deployed by LocalStack's CloudFormation; LocalStack's Lambda runs every function from the
zip in local_lambda worker processes (the runtime executor `local-lambda`); `make demo`'s scenarios go through
API Gateway with SigV4-signed requests, to PostgreSQL, Redis and the payment provider. The tests run in file order:
the last one stops the stack and checks that no worker outlives it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.deploy.localstack.demo import call_api, run_through_api, start_saga, wait_for_saga
from infra.deploy.localstack.deploy import REGION, STACK_FILE_NAME
from infra.deploy.localstack.full_stack import FullStack, worker_processes
from infra.deploy.localstack.host import DEFAULT_PYTHON
from infra.engine.local_engine import load_template
from infra.tools.demo import SCENARIOS, execution_arn
from tests.helpers import purchase


@pytest.fixture(scope="module")
def stack(packaged: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullStack]:
    python = Path(os.environ.get("LOCALSTACK_PYTHON", str(DEFAULT_PYTHON)))
    with FullStack(tmp_path_factory.mktemp("full-stack"), localstack_python=python) as running:
        yield running


@pytest.fixture(scope="module")
def aws(stack: FullStack) -> Callable[[str], Any]:
    assert stack.localstack is not None

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=stack.localstack.endpoint_url,  # type: ignore[union-attr]
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    return client


def test_the_package_is_deployed_by_cloudformation_with_every_function_behind_its_alias(
    stack: FullStack, aws: Callable[[str], Any], packaged: Path
) -> None:
    assert stack.deployment is not None
    cloudformation = aws("cloudformation")
    assert cloudformation.describe_stacks(StackName=stack.deployment.stack)["Stacks"][0]["StackStatus"] == (
        "CREATE_COMPLETE"
    )
    resources = cloudformation.list_stack_resources(StackName=stack.deployment.stack)["StackResourceSummaries"]
    functions = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::Lambda::Function"]
    template = load_template(packaged / "sam.yaml")
    assert len(functions) == sum(r["Type"] == "AWS::Serverless::Function" for r in template["Resources"].values())
    lambda_client = aws("lambda")
    for name in functions:
        assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=name)["Aliases"]] == ["live"]
    assert json.loads((packaged / STACK_FILE_NAME).read_text())["api_url"] == stack.deployment.api_url


def test_the_state_machines_invoke_the_function_aliases_that_cloudformation_substituted(
    stack: FullStack, aws: Callable[[str], Any]
) -> None:
    assert stack.deployment is not None
    stepfunctions = aws("stepfunctions")
    for output in ("PurchaseStateMachineArn", "ReturnStateMachineArn"):
        arn = stack.deployment.outputs[output]
        definition = json.loads(stepfunctions.describe_state_machine(stateMachineArn=arn)["definition"])
        invoked = {s["Parameters"]["FunctionName"] for s in definition["States"].values() if "Parameters" in s}
        assert invoked
        assert all(name.startswith("arn:aws:lambda:") and name.endswith(":live") for name in invoked)


def test_functions_read_the_data_stores_from_the_stack_parameters_and_secrets_not_from_urls(
    stack: FullStack, aws: Callable[[str], Any]
) -> None:
    assert stack.deployment is not None
    configuration = aws("lambda").get_function_configuration(FunctionName=stack.deployment.outputs["APIHandlerName"])
    variables = configuration["Environment"]["Variables"]
    assert {"DATABASE_URL", "REDIS_URL"}.isdisjoint(variables)
    assert variables["DATABASE_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert variables["PAYMENT_PROVIDER_API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert (variables["DATABASE_TLS"], variables["REDIS_TLS"], variables["REDIS_DB"]) == ("false", "false", "11")
    assert variables["PURCHASE_STATE_MACHINE_ARN"] == stack.deployment.outputs["PurchaseStateMachineArn"]
    products = call_api("GET", f"{stack.deployment.api_url}/products")
    assert "SKU-KEYBOARD" in {product["sku"] for product in products["items"]}


def test_the_reconcilers_schedule_targets_its_alias_and_a_pass_runs_when_invoked(
    stack: FullStack, aws: Callable[[str], Any]
) -> None:
    assert stack.deployment is not None
    schedule = aws("scheduler").get_schedule(Name=f"{stack.deployment.stack}-reconciler")
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Target"]["Arn"].endswith(":live")
    # LocalStack's open-source scheduler never fires: a pass is invoked as the schedule would invoke it.
    answer = aws("lambda").invoke(FunctionName=schedule["Target"]["Arn"], Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()


def test_every_scenario_of_make_demo_ends_as_expected_through_api_gateway(
    stack: FullStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.deployment is not None
    api_url = stack.deployment.api_url
    status = run_through_api(api_url)
    table = capsys.readouterr().out
    assert status == 0, table
    assert f"all {len(SCENARIOS)} scenarios ended as expected; no invariant broken." in table


def test_a_crashed_and_a_timed_out_attempt_fail_as_lambda_reports_them_and_the_retries_succeed(
    stack: FullStack, aws: Callable[[str], Any]
) -> None:
    assert stack.deployment is not None
    api_url = stack.deployment.api_url
    saga_id = start_saga(api_url, purchase(process_payment="crash:1", confirm_sale="timeout:1"))
    wait_for_saga(api_url, saga_id)
    assert call_api("GET", f"{api_url}/sagas/{saga_id}")["status"] == "COMPLETED"
    history = aws("stepfunctions").get_execution_history(executionArn=execution_arn(saga_id))["events"]
    failures = [event["taskFailedEventDetails"]["error"] for event in history if event["type"] == "TaskFailed"]
    assert failures == ["Runtime.ExitError", "Sandbox.Timedout"]


def test_stopping_the_stack_stops_localstack_and_every_worker(stack: FullStack) -> None:
    assert stack.localstack is not None and stack.localstack.process is not None
    localstack_pid = stack.localstack.process.pid
    workers = worker_processes(stack.workdir)
    assert workers, "the functions ran in worker processes under LocalStack's folder"
    stack.__exit__(None, None, None)
    assert worker_processes(stack.workdir) == []
    assert not Path(f"/proc/{localstack_pid}").exists()
