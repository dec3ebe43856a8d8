"""Deploy `make package`'s output to LocalStack with boto3: functions, state machines, the API, then migrate.

`python -m infra.localstack.deploy --endpoint-url http://127.0.0.1:4566` reads out/sam.yaml and
out/deployment.zip (the same artifact `sam deploy` ships to AWS) and creates, or updates when they exist:
one IAM role, every function of the template with the real code, both state machines with the function
ARNs substituted, and the REST API from the Swagger that chalice generated, deployed to its stage. It then
invokes the migration function (`{"seed": true}`) and writes what it made to out/localstack-stack.json,
which `make localstack-smoke` reads.

What AWS takes from the stack's parameters (RDS Proxy, ElastiCache, their secrets, the VPC) is replaced by
the containers of infra/localstack/docker-compose.yml: functions get DATABASE_URL and REDIS_URL instead.
`--no-functions` skips what needs LocalStack's Lambda runtime (Docker): functions, permission, migration.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

from infra.local_engine import load_template, state_machine_definition

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "out"
STACK_FILE_NAME = "localstack-stack.json"
REGION = "us-east-1"
STAGE = "api"
DEFAULT_DATABASE_URL = "postgresql+pg8000://postgres@postgres:5432/saga"
DEFAULT_REDIS_URL = "redis://redis:6379/0"
DEFAULT_PROVIDER_URL = "http://host.docker.internal:8010"
"""The payment provider `make run` (or `python -m payment_provider`) serves on the host, seen from a container."""
DEFAULT_LAMBDA_ENDPOINT_URL = "http://localstack:4566"
"""How code inside LocalStack's Lambda containers reaches LocalStack and the data stores (compose service names)."""
DEPLOYED_ONLY_VARIABLES = frozenset(
    {"DATABASE_ENGINE", "DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME", "DATABASE_SECRET_ARN", "DATABASE_TLS"}
    | {"REDIS_HOST", "REDIS_PORT"}
    | {"REDIS_AUTH_SECRET_ARN", "SAGA_ALLOW_FAULTS", "PAYMENT_PROVIDER_URL", "PAYMENT_PROVIDER_API_KEY_SECRET_ARN"}
)
FUNCTION_TYPE = "AWS::Serverless::Function"
STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"
ACTIVE_TIMEOUT_SECONDS = 300
ALIAS = "live"
"""What AutoPublishAlias names each function's alias (and each state machine's, which sagas start on)."""


@dataclass
class Deployment:
    """What a deploy made; written as JSON beside the package."""

    endpoint_url: str
    region: str
    stack: str
    functions: dict[str, str] = field(default_factory=dict)
    state_machines: dict[str, str] = field(default_factory=dict)
    api_id: str = ""
    api_url: str = ""


@dataclass
class StackDeployer:
    endpoint_url: str
    package_dir: Path = PACKAGE_DIR
    stack: str = "saga-local"
    region: str = REGION
    with_functions: bool = True
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    provider_url: str = DEFAULT_PROVIDER_URL
    lambda_endpoint_url: str = DEFAULT_LAMBDA_ENDPOINT_URL
    _template: dict[str, Any] = field(default_factory=dict, init=False)
    _account: str = field(default="", init=False)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106  # nosec B106
        )

    def deploy(self) -> Deployment:
        self._template = load_template(self.package_dir / "sam.yaml")
        self._account = self.client("sts").get_caller_identity()["Account"]
        deployment = Deployment(self.endpoint_url, self.region, self.stack)
        deployment.functions = {name: self.function_arn(name) for name in self._resources(FUNCTION_TYPE)}
        deployment.state_machines = {name: self.state_machine_arn(name) for name in self._resources(STATE_MACHINE_TYPE)}
        role = self._role()
        if self.with_functions:
            self._deploy_functions(role)
        self._deploy_state_machines(role)
        deployment.api_id = self._deploy_api()
        deployment.api_url = f"{self.endpoint_url}/_aws/execute-api/{deployment.api_id}/{STAGE}"
        if self.with_functions:
            self._allow_api_to_invoke(deployment.api_id)
            self._migrate()
        (self.package_dir / STACK_FILE_NAME).write_text(json.dumps(asdict(deployment), indent=2) + "\n")
        return deployment

    def _resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self._template["Resources"].items() if v["Type"] == resource_type}

    def name_of(self, logical_id: str) -> str:
        return f"{self.stack}-{logical_id}"

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self._account}:function:{self.name_of(logical_id)}"

    def state_machine_arn(self, logical_id: str) -> str:
        return f"arn:aws:states:{self.region}:{self._account}:stateMachine:{self.name_of(logical_id)}"

    def resolve(self, value: Any) -> str:
        """A template value: plain, or a Ref/GetAtt of one of our functions (or its alias) or state machines (or
        theirs: this deploy publishes no state machine version, so sagas start on the state machine itself)."""
        if isinstance(value, str):
            return value
        functions, machines = self._resources(FUNCTION_TYPE), self._resources(STATE_MACHINE_TYPE)
        if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][0] in functions:
            return self.function_arn(value["Fn::GetAtt"][0])
        ref = str(value.get("Ref", "")) if isinstance(value, dict) else ""
        if ref.endswith(".Alias") and ref.removesuffix(".Alias") in functions:
            return f"{self.function_arn(ref.removesuffix('.Alias'))}:{ALIAS}"
        if ref.endswith(f"Alias{ALIAS}") and ref.removesuffix(f"Alias{ALIAS}") in machines:
            return self.state_machine_arn(ref.removesuffix(f"Alias{ALIAS}"))
        if isinstance(value, dict) and value.get("Ref") in functions:
            return self.name_of(value["Ref"])
        if isinstance(value, dict) and value.get("Ref") in machines:
            return self.state_machine_arn(value["Ref"])
        parameter = self._template.get("Parameters", {}).get(value.get("Ref")) if isinstance(value, dict) else None
        if parameter is not None and "Default" in parameter:
            return str(parameter["Default"])
        raise ValueError(f"cannot resolve {value!r} outside CloudFormation")

    def function_configuration(self, logical_id: str, role: str) -> dict[str, Any]:
        """create_function's arguments (less the code) for a template function, wired to the local data stores."""
        defaults = self._template.get("Globals", {}).get("Function", {})
        properties = {**defaults, **self._resources(FUNCTION_TYPE)[logical_id]["Properties"]}
        inherited = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **properties.get("Environment", {}).get("Variables", {}),
        }
        variables = {k: self.resolve(v) for k, v in inherited.items() if k not in DEPLOYED_ONLY_VARIABLES}
        variables |= {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PAYMENT_PROVIDER_URL": self.provider_url,
            "AWS_ENDPOINT_URL": self.lambda_endpoint_url,
            "SAGA_ALLOW_FAULTS": "true",
        }
        return {
            "FunctionName": self.name_of(logical_id),
            "Runtime": properties["Runtime"],
            "Handler": properties["Handler"],
            "Role": role,
            "Timeout": int(properties.get("Timeout", 30)),
            "MemorySize": int(properties.get("MemorySize", 512)),
            "Architectures": properties.get("Architectures", ["x86_64"]),
            "Environment": {"Variables": variables},
        }

    def _role(self) -> str:
        iam = self.client("iam")
        name = f"{self.stack}-role"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
                for service in ("lambda.amazonaws.com", "states.amazonaws.com")
            ],
        }
        try:
            return str(iam.get_role(RoleName=name)["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])

    def _deploy_functions(self, role: str) -> None:
        lambda_client = self.client("lambda")
        code = (self.package_dir / "deployment.zip").read_bytes()
        for logical_id in self._resources(FUNCTION_TYPE):
            configuration = self.function_configuration(logical_id, role)
            try:
                lambda_client.get_function(FunctionName=configuration["FunctionName"])
            except lambda_client.exceptions.ResourceNotFoundException:
                lambda_client.create_function(**configuration, Code={"ZipFile": code})
            else:
                lambda_client.update_function_code(FunctionName=configuration["FunctionName"], ZipFile=code)
                self._wait_updated(lambda_client, configuration["FunctionName"])
                configuration.pop("Architectures")
                lambda_client.update_function_configuration(**configuration)
            self._wait_updated(lambda_client, configuration["FunctionName"])
            self._publish(lambda_client, configuration["FunctionName"])

    def _publish(self, lambda_client: Any, name: str) -> None:
        """A version of the function behind the alias the state machines and the API invoke, as AutoPublishAlias."""
        version = lambda_client.publish_version(FunctionName=name)["Version"]
        try:
            lambda_client.update_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)
        except lambda_client.exceptions.ResourceNotFoundException:
            lambda_client.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)

    @staticmethod
    def _wait_updated(lambda_client: Any, name: str) -> None:
        deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            found = lambda_client.get_function(FunctionName=name)["Configuration"]
            if found["State"] == "Failed" or found.get("LastUpdateStatus") == "Failed":
                raise RuntimeError(f"LocalStack could not set up {name}: {found.get('StateReason')}")
            if found["State"] == "Active" and found.get("LastUpdateStatus", "Successful") == "Successful":
                return
            time.sleep(1)
        raise TimeoutError(f"{name} not active after {ACTIVE_TIMEOUT_SECONDS} s")

    def _deploy_state_machines(self, role: str) -> None:
        sfn = self.client("stepfunctions")
        for logical_id, resource in self._resources(STATE_MACHINE_TYPE).items():
            definition = state_machine_definition(resource["Properties"], self.resolve, root=self.package_dir)
            arn = self.state_machine_arn(logical_id)
            try:
                sfn.describe_state_machine(stateMachineArn=arn)
            except sfn.exceptions.StateMachineDoesNotExist:
                sfn.create_state_machine(name=self.name_of(logical_id), definition=definition, roleArn=role)
            else:
                sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)

    def api_definition(self) -> dict[str, Any]:
        """The Swagger chalice generated, its integration URIs resolved to our API function."""
        body = copy.deepcopy(self._resources("AWS::Serverless::Api")["RestAPI"]["Properties"]["DefinitionBody"])
        body["info"]["title"] = self.name_of("RestAPI")
        for methods in body["paths"].values():
            for operation in methods.values():
                integration = operation.get("x-amazon-apigateway-integration")
                if integration and isinstance(integration.get("uri"), dict):
                    integration["uri"] = self._substitute(integration["uri"]["Fn::Sub"])
        return dict(body)

    def _substitute(self, sub: str | list[Any]) -> str:
        """A `Fn::Sub`, its text alone or with its variables."""
        text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        values = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self._account}
        values |= {f"{name}.Arn": self.function_arn(name) for name in self._resources(FUNCTION_TYPE)}
        values |= {name: self.resolve(value) for name, value in variables.items()}
        for key, value in values.items():
            text = text.replace(f"${{{key}}}", value)
        if "${" in text:
            raise ValueError(f"cannot substitute {text!r} outside CloudFormation")
        return text

    def _deploy_api(self) -> str:
        apigateway = self.client("apigateway")
        body = json.dumps(self.api_definition()).encode()
        title = self.name_of("RestAPI")
        existing = [api["id"] for api in apigateway.get_rest_apis(limit=500)["items"] if api["name"] == title]
        if existing:
            api_id = str(existing[0])
            apigateway.put_rest_api(restApiId=api_id, mode="overwrite", body=body)
        else:
            api_id = str(apigateway.import_rest_api(body=body)["id"])
        apigateway.create_deployment(restApiId=api_id, stageName=STAGE)
        return api_id

    def _allow_api_to_invoke(self, api_id: str) -> None:
        lambda_client = self.client("lambda")
        with contextlib.suppress(lambda_client.exceptions.ResourceConflictException):  # granted by an earlier deploy
            lambda_client.add_permission(
                FunctionName=self.name_of("APIHandler"),
                Qualifier=ALIAS,
                StatementId="api-gateway-invoke",
                Action="lambda:InvokeFunction",
                Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:{self.region}:{self._account}:{api_id}/*",
            )

    def _migrate(self) -> None:
        answer = self.client("lambda").invoke(
            FunctionName=self.name_of("MigrateFunction"), Payload=json.dumps({"seed": True}).encode()
        )
        if answer.get("FunctionError"):
            raise RuntimeError(f"the migration function failed: {answer['Payload'].read().decode()[:2000]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", default="http://127.0.0.1:4566", help="LocalStack's endpoint")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="make package's output (out/)")
    parser.add_argument("--stack", default="saga-local", help="prefix of every resource name")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="as the functions reach PostgreSQL")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="as the functions reach Redis")
    parser.add_argument(
        "--provider-url", default=DEFAULT_PROVIDER_URL, help="as the functions reach the payment provider"
    )
    parser.add_argument(
        "--lambda-endpoint-url", default=DEFAULT_LAMBDA_ENDPOINT_URL, help="LocalStack, seen from a function"
    )
    parser.add_argument("--no-functions", action="store_true", help="skip what needs a Lambda runtime (no Docker)")
    args = parser.parse_args(argv)
    deployment = StackDeployer(
        endpoint_url=args.endpoint_url,
        package_dir=args.package_dir,
        stack=args.stack,
        with_functions=not args.no_functions,
        database_url=args.database_url,
        redis_url=args.redis_url,
        provider_url=args.provider_url,
        lambda_endpoint_url=args.lambda_endpoint_url,
    ).deploy()
    print(
        f"deployed {len(deployment.functions) if not args.no_functions else 0} functions, "
        f"{len(deployment.state_machines)} state machines, API {deployment.api_url}"
    )
    print(f"wrote {args.package_dir / STACK_FILE_NAME}")


if __name__ == "__main__":
    main()
