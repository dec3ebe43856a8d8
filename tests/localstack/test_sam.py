"""What CloudFormation makes of the package: the SAM transform (aws-sam-translator, from LocalStack's virtualenv)
applied to `make package`'s template, as `sam deploy` has CloudFormation apply it (docs/design.md §7.3)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.localstack.host import DEFAULT_PYTHON
from infra.engine.local_engine import load_template
from tests.helpers import ROOT
from tests.template_refs import function_substitutions


@pytest.fixture(scope="module")
def resources(packaged: Path) -> dict[str, Any]:
    python = os.environ.get("LOCALSTACK_PYTHON", str(DEFAULT_PYTHON))
    done = subprocess.run(
        [python, "-m", "infra.deploy.localstack.sam_transform", str(packaged / "sam.yaml")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout)["Resources"])


def _of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: resource for name, resource in resources.items() if resource["Type"] == resource_type}


def test_every_function_is_published_as_a_version_behind_the_alias_live(
    resources: dict[str, Any], packaged: Path
) -> None:
    functions = _of_type(resources, "AWS::Lambda::Function")
    aliases = _of_type(resources, "AWS::Lambda::Alias")

    assert {alias["Properties"]["FunctionName"]["Ref"] for alias in aliases.values()} == set(functions)
    assert {alias["Properties"]["Name"] for alias in aliases.values()} == {"live"}
    assert len(_of_type(resources, "AWS::Lambda::Version")) == len(functions) == len(_packaged_functions(packaged))
    assert {f["Properties"]["Runtime"] for f in functions.values()} == {"python3.12"}


def test_the_state_machines_invoke_the_aliases_and_are_deployed_gradually_behind_one(resources: dict[str, Any]) -> None:
    for machine in ("PurchaseSagaStateMachine", "ReturnSagaStateMachine"):
        substitutions = function_substitutions(resources[machine]["Properties"])
        alias = resources[f"{machine}Aliaslive"]
        version = resources[f"{machine}Version"]

        assert all(value["Ref"].endswith("Aliaslive") for value in substitutions.values())
        assert alias["Type"] == "AWS::StepFunctions::StateMachineAlias"
        preference = alias["Properties"]["DeploymentPreference"]
        assert preference["StateMachineVersionArn"] == {"Ref": f"{machine}Version"}
        assert (preference["Type"], preference["Alarms"]) == (
            "CANARY",
            [{"Ref": machine.replace("StateMachine", "DefinitionFaultsAlarm")}],
        )
        # A running execution keeps the version it started on: an older version stays when a new one comes.
        assert (version["DeletionPolicy"], version["UpdateReplacePolicy"]) == ("Retain", "Retain")
        role = resources[resources[machine]["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
        resources_allowed = [
            statement["Resource"]["Fn::Sub"][0]
            for policy in role["Properties"]["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
            if statement["Action"] == ["lambda:InvokeFunction"]
        ]
        assert resources_allowed and all(r.endswith(":function:${functionName}*") for r in resources_allowed)


def test_the_api_the_schedule_and_the_migration_invoke_aliases(resources: dict[str, Any]) -> None:
    alias: Callable[[str], dict[str, str]] = lambda function: {"Ref": f"{function}Aliaslive"}  # noqa: E731
    schedules = _of_type(resources, "AWS::Scheduler::Schedule").values()
    targets = {
        schedule["Properties"]["Target"]["Arn"]["Ref"]: schedule["Properties"]["Target"] for schedule in schedules
    }

    assert resources["APIHandlerInvokePermission"]["Properties"]["FunctionName"] == alias("APIHandler")
    assert set(targets) == {alias("ReconcilerFunction")["Ref"], alias("BulkRetryFunction")["Ref"]}
    assert targets[alias("ReconcilerFunction")["Ref"]]["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    assert resources["DatabaseMigration"]["Properties"]["ServiceToken"] == alias("MigrateFunction")
    for function in ("ReserveStockFunction", "APIHandler", "ReconcilerFunction"):
        assert resources[function]["DependsOn"] in ("DatabaseMigration", ["DatabaseMigration"]), function


def _packaged_functions(packaged: Path) -> list[str]:
    """The functions `make package` writes into the template: the template's and chalice's API handler."""
    template = load_template(packaged / "sam.yaml")
    return [name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
