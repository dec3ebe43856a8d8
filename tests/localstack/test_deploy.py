"""infra/localstack/deploy.py against host-mode LocalStack, as far as a machine without Docker allows.

`make package` builds the real artifact; the deploy creates the role, both state machines and the API
from it. Functions (and so the migration and the API's answers) need LocalStack's Lambda runtime, which
runs in Docker: here their configuration is checked instead, and the API is shown to route to them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.local_engine import load_template
from infra.localstack.deploy import STACK_FILE_NAME, Deployment, StackDeployer
from infra.localstack.host import HostLocalStack


@pytest.fixture(scope="module")
def deployer(localstack: HostLocalStack, packaged: Path) -> StackDeployer:
    return StackDeployer(endpoint_url=localstack.endpoint_url, package_dir=packaged, with_functions=False)


@pytest.fixture(scope="module")
def deployed(deployer: StackDeployer) -> Deployment:
    return deployer.deploy()


def test_both_state_machines_are_deployed_with_the_functions_alias_arns_in_place(
    deployed: Deployment, aws: Callable[[str], Any]
) -> None:
    sfn = aws("stepfunctions")
    assert set(deployed.state_machines) == {"PurchaseSagaStateMachine", "ReturnSagaStateMachine"}
    for arn in deployed.state_machines.values():
        definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
        functions = {
            state["Parameters"]["FunctionName"] for state in definition["States"].values() if "Parameters" in state
        }
        assert functions and functions <= {f"{function}:live" for function in deployed.functions.values()}


def test_the_api_has_every_route_of_the_package_and_points_them_at_the_api_function(
    deployed: Deployment, packaged: Path, aws: Callable[[str], Any]
) -> None:
    apigateway = aws("apigateway")
    routes = load_template(packaged / "sam.yaml")["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    resources = apigateway.get_resources(restApiId=deployed.api_id, limit=500)["items"]
    made = {(r["path"], method) for r in resources for method in r.get("resourceMethods", {})}
    assert made == {(path, method.upper()) for path, methods in routes.items() for method in methods}
    purchases = next(r for r in resources if r["path"] == "/purchases")
    integration = apigateway.get_integration(restApiId=deployed.api_id, resourceId=purchases["id"], httpMethod="POST")
    assert integration["type"] == "AWS_PROXY"
    assert deployed.functions["APIHandler"] in integration["uri"]
    assert [s["stageName"] for s in apigateway.get_stages(restApiId=deployed.api_id)["item"]] == ["api"]


def test_a_request_to_the_deployed_api_reaches_its_lambda_integration(deployed: Deployment) -> None:
    # No Lambda runtime here: the integration fails (502) where an unrouted path would be a 404.
    with pytest.raises(urllib.error.HTTPError) as routed:
        urllib.request.urlopen(f"{deployed.api_url}/products", timeout=10)
    assert routed.value.code == 502


def test_functions_get_the_packaged_handlers_and_the_local_data_stores_and_no_aws_only_settings(
    deployer: StackDeployer, deployed: Deployment, packaged: Path
) -> None:
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        shipped = set(archive.namelist())
    for logical_id in deployed.functions:
        configuration = deployer.function_configuration(logical_id, "arn:aws:iam::000000000000:role/r")
        module = configuration["Handler"].rpartition(".")[0]
        assert f"{module.replace('.', '/')}.py" in shipped, configuration["Handler"]
        variables = configuration["Environment"]["Variables"]
        assert variables["DATABASE_URL"].startswith("postgresql+pg8000://")
        assert variables["REDIS_URL"].startswith("redis://")
        assert not {"DATABASE_SECRET_ARN", "REDIS_AUTH_SECRET_ARN", "DATABASE_HOST"} & set(variables)
    api = deployer.function_configuration("APIHandler", "r")["Environment"]["Variables"]
    assert api["PURCHASE_STATE_MACHINE_ARN"] == deployed.state_machines["PurchaseSagaStateMachine"]
    assert api["RETURN_STATE_MACHINE_ARN"] == deployed.state_machines["ReturnSagaStateMachine"]


def test_a_second_deploy_updates_in_place_and_records_the_stack(
    deployer: StackDeployer, deployed: Deployment, packaged: Path, aws: Callable[[str], Any]
) -> None:
    again = deployer.deploy()
    assert again == deployed
    assert json.loads((packaged / STACK_FILE_NAME).read_text())["api_url"] == deployed.api_url
    names = [m["name"] for m in aws("stepfunctions").list_state_machines()["stateMachines"]]
    assert names.count("saga-local-PurchaseSagaStateMachine") == 1
