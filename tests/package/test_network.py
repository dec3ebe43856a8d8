"""The functions run in private subnets with no route to AWS's public endpoints (docs/deploy.md#network): every
AWS API the deployed code calls has a VPC endpoint in the template, open to the functions' security group.

The code's AWS calls are found by reading it: each `boto3.client("<service>")`, each Powertools parameters call
(Secrets Manager, SSM, AppConfig behind them), and the custom resource's answer to CloudFormation, a PUT to a
pre-signed S3 URL. Logs, EMF metrics and X-Ray segments are not among them: Lambda carries those itself.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from infra.engine.local_engine import load_template

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py")), *sorted((ROOT / "functions").glob("*.py"))]
RESOURCES: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"]

ENDPOINT_OF_CLIENT = {"stepfunctions": "states", "secretsmanager": "secretsmanager", "ssm": "ssm", "s3": "s3"}
"""boto3's client name -> the endpoint service's (`com.amazonaws.<region>.<this>`)."""
POWERTOOLS_PARAMETERS = {"get_secret": "secretsmanager", "get_secrets_by_name": "secretsmanager"}
POWERTOOLS_PARAMETERS |= {"get_parameter": "ssm", "get_parameters": "ssm", "get_app_config": "appconfigdata"}
CUSTOM_RESOURCE_ANSWER = "ResponseURL"
"""A custom resource answers CloudFormation with a PUT to this pre-signed S3 URL of the request."""


def aws_services_called(paths: list[Path]) -> dict[str, set[str]]:
    """Endpoint service -> the modules of `paths` that call it."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        module = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            service = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name, owner = node.func.attr, node.func.value
                if name == "client" and isinstance(owner, ast.Name) and owner.id == "boto3":
                    argument = node.args[0]
                    assert isinstance(argument, ast.Constant), f"{module}: name boto3's client literally"
                    service = ENDPOINT_OF_CLIENT[str(argument.value)]
                elif name in POWERTOOLS_PARAMETERS and isinstance(owner, ast.Name) and owner.id == "parameters":
                    service = POWERTOOLS_PARAMETERS[name]
            elif isinstance(node, ast.Constant) and node.value == CUSTOM_RESOURCE_ANSWER:
                service = "s3"
            if service:
                found.setdefault(service, set()).add(module)
    return found


def endpoints() -> dict[str, dict[str, Any]]:
    """Endpoint service -> the template's VPC endpoint for it."""
    found = {}
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::EC2::VPCEndpoint":
            properties = resource["Properties"]
            name = properties["ServiceName"]["Fn::Sub"]
            assert name.startswith("com.amazonaws.${AWS::Region}."), name
            found[name.removeprefix("com.amazonaws.${AWS::Region}.")] = properties
    return found


def test_the_scan_finds_what_the_code_calls() -> None:
    called = aws_services_called(SHIPPED)

    assert set(called) == {"states", "secretsmanager", "s3"}
    assert "chalicelib/adapters/step_functions.py" in called["states"]
    assert "chalicelib/settings.py" in called["secretsmanager"]
    assert called["s3"] == {"chalicelib/entrypoints/custom_resource.py"}


def test_every_aws_api_the_functions_call_has_an_endpoint_in_their_subnets() -> None:
    available = endpoints()

    for service, modules in aws_services_called(SHIPPED).items():
        assert service in available, f"{service} (called by {sorted(modules)}) has no VPC endpoint"
        endpoint = available[service]
        if endpoint["VpcEndpointType"] == "Interface":
            assert endpoint["SubnetIds"] == {"Ref": "SubnetIds"}, service
            assert endpoint["PrivateDnsEnabled"] is True, service  # boto3's default host names reach it
            assert endpoint["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}], service
        else:
            assert endpoint["RouteTableIds"] == {"Ref": "PrivateRouteTableIds"}, service


def test_the_endpoints_admit_https_from_the_functions_security_group_which_every_function_has() -> None:
    [ingress] = RESOURCES["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    groups = load_template(ROOT / "template.yaml")["Globals"]["Function"]["VpcConfig"]["SecurityGroupIds"]

    assert (ingress["IpProtocol"], ingress["FromPort"], ingress["ToPort"]) == ("tcp", 443, 443)
    assert ingress["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    assert {"Ref": "FunctionSecurityGroup"} in groups["Fn::Split"][1]["Fn::Join"][1]
    assert all("VpcConfig" not in r["Properties"] for r in RESOURCES.values() if "Function" in r["Type"])


def test_a_stack_that_creates_the_endpoints_must_name_the_route_tables_of_the_s3_one() -> None:
    template = load_template(ROOT / "template.yaml")
    rule = template["Rules"]["RouteTablesForTheS3Endpoint"]

    assert rule["RuleCondition"] == template["Conditions"]["CreatesVpcEndpoints"]
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "PrivateRouteTableIds"}]}, ""]}]
    }
    assert {r.get("Condition") for r in RESOURCES.values() if r["Type"] == "AWS::EC2::VPCEndpoint"} == {
        "CreatesVpcEndpoints"
    }
