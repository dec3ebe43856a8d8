"""Deploy `make package`'s output to LocalStack with its CloudFormation: the SAM template as `sam deploy` ships it.

`python -m infra.deploy.localstack.deploy --endpoint-url http://127.0.0.1:4566 ...` puts out/deployment.zip and the
state machines' ASL files in a LocalStack S3 bucket, and the template too (by TemplateURL: it is over CreateStack's
51,200-byte body limit), then creates the stack, or updates it, and waits for the outcome. LocalStack's
CloudFormation creates every resource, substitutes the definitions and publishes the function versions and
aliases; the SAM transform itself is applied just before, by the same samtranslator LocalStack would use
(infra/deploy/localstack/sam_transform.py says why).

What a stack expects to exist before it is deployed is made first, as an AWS account would hold it: the
secrets (the functions read them at run time; none for a Redis without AUTH) and a VPC with two subnets and a
security group (VpcConfig names them; host-mode functions do not use them). The parameters point at the data
stores and the payment provider given on the command line, with TLS off and faults allowed; the VPC endpoints
are not created (CreateVpcEndpoints=false), and sagas start on the state machines themselves
(SagasStartOnAlias=false): LocalStack's open-source CloudFormation has no provider for state machine versions
and aliases, and deploys them as placeholders.

LocalStack's open-source CloudFormation has no provider for `AWS::CloudFormation::CustomResource`: it marks the
migration resource deployed without invoking anything. So once the stack is complete, the migration function
is invoked as the custom resource would invoke it, with `{"seed": true}` to add the demo catalogue. What the
deploy made is written to out/localstack-stack.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess  # nosec B404
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[3]
LOCALSTACK_PYTHON = ROOT / ".localstack" / "venv" / "bin" / "python"
"""It has aws-sam-translator, which the project's own virtualenv lacks."""
PACKAGE_DIR = ROOT / "out"
STACK_FILE_NAME = "localstack-stack.json"
REGION = "us-east-1"
STAGE = "api"
BUCKET = "saga-deploy-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
STACK_TIMEOUT_SECONDS = 600
UNUSED_NAT_GATEWAY = "nat-00000000"
"""NatGatewayId only names the alarm's dimension; host-mode functions reach the provider directly."""


@dataclass(frozen=True)
class DataStores:
    """Where the functions find PostgreSQL, Redis and the payment provider, and the secrets' values."""

    database_host: str = "127.0.0.1"
    database_port: int = 5432
    database_name: str = "saga"
    database_user: str = "postgres"
    database_password: str = "local-trust-auth"  # noqa: S105  # nosec B105 - PostgreSQL trusts loopback here
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_database: int = 0
    redis_auth_token: str = ""
    provider_url: str = "http://127.0.0.1:8010"
    provider_api_key: str = "sk_test_local"


COMPOSE_DATA_STORES = DataStores(
    database_host="postgres", redis_host="redis", provider_url="http://host.docker.internal:8010"
)
"""As the Lambda containers of infra/deploy/localstack/docker-compose.yml reach them (its service names; the provider
that runs on the host, `python -m payment_provider`)."""


@dataclass
class Deployment:
    """What a deploy made; written as JSON beside the package."""

    endpoint_url: str
    region: str
    stack: str
    api_id: str = ""
    api_url: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class StackDeployer:
    endpoint_url: str
    data_stores: DataStores = field(default_factory=DataStores)
    package_dir: Path = PACKAGE_DIR
    stack: str = "saga-local"
    region: str = REGION
    localstack_python: Path = LOCALSTACK_PYTHON

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106  # nosec B106
        )

    def deploy(self) -> Deployment:
        template_url = self._upload_package()
        parameters = {**self._network(), **self._secrets(), **self._data_store_parameters()}
        self._create_or_update(template_url, parameters)
        deployment = Deployment(self.endpoint_url, self.region, self.stack)
        cloudformation = self.client("cloudformation")
        stack = cloudformation.describe_stacks(StackName=self.stack)["Stacks"][0]
        deployment.outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
        deployment.api_id = cloudformation.describe_stack_resource(StackName=self.stack, LogicalResourceId="RestAPI")[
            "StackResourceDetail"
        ]["PhysicalResourceId"]
        deployment.api_url = f"{self.endpoint_url}/_aws/execute-api/{deployment.api_id}/{STAGE}"
        self._migrate(deployment.outputs["MigrateFunctionName"])
        (self.package_dir / STACK_FILE_NAME).write_text(json.dumps(asdict(deployment), indent=2) + "\n")
        return deployment

    def transformed_template(self) -> bytes:
        """out/sam.yaml after the SAM transform, its code and definitions in our bucket (sam_transform.py says why)."""
        done = subprocess.run(  # noqa: S603  # nosec B603 - our interpreter and module
            [
                str(self.localstack_python),
                "-m",
                "infra.deploy.localstack.sam_transform",
                str(self.package_dir / "sam.yaml"),
                "--bucket",
                BUCKET,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": self.region},
            capture_output=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the SAM transform failed: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout

    def _upload_package(self) -> str:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(self.package_dir / "deployment.zip"), BUCKET, "deployment.zip")
        for definition in sorted((self.package_dir / "statemachines").glob("*.asl.json")):
            s3.upload_file(str(definition), BUCKET, f"statemachines/{definition.name}")
        s3.put_object(Bucket=BUCKET, Key=f"{self.stack}.template.json", Body=self.transformed_template())
        return f"{self.endpoint_url}/{BUCKET}/{self.stack}.template.json"

    def _network(self) -> dict[str, str]:
        """A VPC, two subnets and a security group for VpcConfig (made once, found again on the next deploy)."""
        ec2 = self.client("ec2")
        tag = {"Key": "saga-stack", "Value": self.stack}
        found = ec2.describe_vpcs(Filters=[{"Name": "tag:saga-stack", "Values": [self.stack]}])["Vpcs"]
        if found:
            vpc = found[0]["VpcId"]
        else:
            vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
            ec2.create_tags(Resources=[vpc], Tags=[tag])
        subnets = [
            s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        ]
        for number, zone in enumerate(("a", "b")[len(subnets) :], start=len(subnets)):
            subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.42.{number}.0/24", AvailabilityZone=f"{self.region}{zone}"
            )
            subnets.append(subnet["Subnet"]["SubnetId"])
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["saga-functions"]}]
        )["SecurityGroups"]
        group = (
            groups[0]["GroupId"]
            if groups
            else ec2.create_security_group(GroupName="saga-functions", Description="saga functions", VpcId=vpc)[
                "GroupId"
            ]
        )
        return {
            "VpcId": vpc,
            "SubnetIds": ",".join(subnets[:2]),
            "SecurityGroupIds": group,
            "CreateVpcEndpoints": "false",
            "PrivateRouteTableIds": "",
            "NatGatewayId": UNUSED_NAT_GATEWAY,
        }

    def _secrets(self) -> dict[str, str]:
        """The three secrets the functions read at run time; their ARNs are the stack's parameters."""
        stores = self.data_stores
        values = {
            "DatabaseSecretArn": json.dumps({"username": stores.database_user, "password": stores.database_password}),
            "RedisAuthSecretArn": stores.redis_auth_token,
            "PaymentProviderApiKeySecretArn": stores.provider_api_key,
        }
        # A cache without AUTH has no secret (an empty RedisAuthSecretArn): Secrets Manager refuses empty values.
        return {
            parameter: self._put_secret(f"{self.stack}/{parameter}", value) if value else ""
            for parameter, value in values.items()
        }

    def _put_secret(self, name: str, value: str) -> str:
        secrets = self.client("secretsmanager")
        try:
            return str(secrets.put_secret_value(SecretId=name, SecretString=value)["ARN"])
        except secrets.exceptions.ResourceNotFoundException:
            return str(secrets.create_secret(Name=name, SecretString=value)["ARN"])

    def _data_store_parameters(self) -> dict[str, str]:
        stores = self.data_stores
        return {
            "DatabaseProxyEndpoint": stores.database_host,
            "DatabaseName": stores.database_name,
            "RedisEndpoint": stores.redis_host,
            "RedisPort": str(stores.redis_port),
            "RedisDatabase": str(stores.redis_database),
            "DataStoreTls": "false",
            "PaymentProviderUrl": stores.provider_url,
            "AllowFaults": "true",
            "SagasStartOnAlias": "false",
        }

    def _create_or_update(self, template_url: str, parameters: dict[str, str]) -> None:
        cloudformation = self.client("cloudformation")
        arguments = {
            "StackName": self.stack,
            "TemplateURL": template_url,
            # An empty value given explicitly fails LocalStack's Fn::Equals ("requires a list of 2 string
            # parameters"); left out, the parameter's default (empty) applies.
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items() if v],
            "Capabilities": CAPABILITIES,
        }
        try:
            cloudformation.describe_stacks(StackName=self.stack)
        except cloudformation.exceptions.ClientError:
            cloudformation.create_stack(**arguments)
        else:
            cloudformation.update_stack(**arguments)
        self._wait_for_stack(cloudformation)

    def _wait_for_stack(self, cloudformation: Any) -> None:
        deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status = cloudformation.describe_stacks(StackName=self.stack)["Stacks"][0]["StackStatus"]
            if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                return
            if not status.endswith("_IN_PROGRESS"):
                raise RuntimeError(f"stack {self.stack} ended {status}: {self._failures(cloudformation)}")
            time.sleep(1)
        raise TimeoutError(f"stack {self.stack} not complete after {STACK_TIMEOUT_SECONDS} s")

    def _failures(self, cloudformation: Any) -> str:
        events = cloudformation.describe_stack_events(StackName=self.stack)["StackEvents"]
        failed = [e for e in events if e["ResourceStatus"].endswith("_FAILED")]
        return "; ".join(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed[:5])

    def _migrate(self, function_name: str) -> None:
        answer = self.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps({"seed": True}).encode())
        if answer.get("FunctionError"):
            raise RuntimeError(f"the migration function failed: {answer['Payload'].read().decode()[:2000]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", default="http://127.0.0.1:4566", help="LocalStack's endpoint")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="make package's output (out/)")
    parser.add_argument("--stack", default="saga-local", help="the stack's name")
    parser.add_argument(
        "--docker-compose",
        action="store_true",
        help="the data stores of infra/deploy/localstack/docker-compose.yml (else PostgreSQL and Redis on 127.0.0.1)",
    )
    parser.add_argument("--database-name", default="saga")
    parser.add_argument("--redis-database", type=int, default=0)
    parser.add_argument("--provider-url", help="the payment provider, as the functions reach it")
    args = parser.parse_args(argv)
    stores = dataclasses.replace(
        COMPOSE_DATA_STORES if args.docker_compose else DataStores(),
        database_name=args.database_name,
        redis_database=args.redis_database,
    )
    if args.provider_url:
        stores = dataclasses.replace(stores, provider_url=args.provider_url)
    deployment = StackDeployer(args.endpoint_url, stores, package_dir=args.package_dir, stack=args.stack).deploy()
    print(f"deployed stack {deployment.stack} by CloudFormation; API {deployment.api_url}")
    print(f"wrote {args.package_dir / STACK_FILE_NAME}")


if __name__ == "__main__":
    main()
