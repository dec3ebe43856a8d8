"""`make localstack-demo`: the scenarios of `make demo`, through the packaged stack on host-mode LocalStack.

No Docker: LocalStack runs as a process, its Lambda service runs every function from the deployment zip in
local_lambda worker processes (the runtime executor `local-lambda`), and the stack is deployed by its
CloudFormation (infra/deploy/localstack/full_stack.py). Each saga is started by a SigV4-signed request to LocalStack's
API Gateway, and followed through the API until it is final, then until its execution has ended; the table is
`make demo`'s, read from the same PostgreSQL, provider and execution history. The retry waits are the deployed
definitions' own (not shortened), so the saga whose compensation keeps failing takes about a minute.

Exits non-zero unless every saga ends as expected, no invariant breaks, and no worker outlives LocalStack.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from chalicelib.domain.contracts import PurchaseRequest, SagaRequest
from chalicelib.observability import telemetry
from infra.deploy.localstack.deploy import REGION
from infra.deploy.localstack.full_stack import REDIS_DATABASE, FullStack, worker_processes
from infra.tools.demo import execution_arn, run_scenarios
from infra.tools.signed_request import signed_request

FINAL_STATUSES = frozenset({"COMPLETED", "COMPENSATED", "CANCELLED", "REJECTED", "FAILED", "RESOLVED"})
SAGA_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.5


class ApiRefused(RuntimeError):
    """The API answered a saga request with an error status."""


def call_api(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A SigV4-signed JSON request to the stack's API Gateway; its JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    status, _, answer = signed_request(method, url, data, region=REGION, headers={"Content-Type": "application/json"})
    if status >= 400:
        raise ApiRefused(f"{method} {url}: HTTP {status} {answer.decode(errors='replace')[:500]}")
    return dict(json.loads(answer))


def start_saga(api_url: str, request: SagaRequest) -> str:
    route = "/purchases" if isinstance(request, PurchaseRequest) else "/returns"
    return str(call_api("POST", api_url + route, request.model_dump(mode="json"))["saga_id"])


def wait_for_saga(api_url: str, saga_id: str) -> None:
    """Until the API shows the saga final, then until its execution has ended (its history is then complete)."""
    deadline = time.monotonic() + SAGA_TIMEOUT_SECONDS
    while call_api("GET", f"{api_url}/sagas/{saga_id}")["status"] not in FINAL_STATUSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"saga {saga_id} not final after {SAGA_TIMEOUT_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)
    stepfunctions = boto3.client("stepfunctions")
    arn = execution_arn(saga_id)
    while stepfunctions.describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the execution of saga {saga_id} still runs after {SAGA_TIMEOUT_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


def run_through_api(api_url: str) -> int:
    """`make demo`'s scenarios, each saga started, cancelled and followed through the API; the exit status."""
    stepfunctions = boto3.client("stepfunctions")
    return run_scenarios(
        lambda request: start_saga(api_url, request),
        lambda saga_id: wait_for_saga(api_url, saga_id),
        lambda saga_id: call_api("POST", f"{api_url}/sagas/{saga_id}/cancel"),
        lambda arn: list(stepfunctions.get_execution_history(executionArn=arn, maxResults=1000)["events"]),
    )


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    telemetry.quiet()
    workdir = Path(tempfile.mkdtemp(prefix="saga-localstack-"))
    started = time.monotonic()
    try:
        with FullStack(workdir) as stack:
            assert stack.deployment is not None and stack.localstack is not None  # nosec B101
            api_url = stack.deployment.api_url
            print(
                f"Host-mode LocalStack on {stack.localstack.endpoint_url}, no Docker: Lambda runs the zip's functions "
                "in local_lambda worker processes (runtime executor local-lambda)."
            )
            print(
                f"Deployed out/ by LocalStack's CloudFormation: stack {stack.deployment.stack} complete in "
                f"{stack.deploy_seconds:.0f} s; migration run; API {api_url} (SigV4-signed requests)."
            )
            print(
                f"Data: PostgreSQL database {stack.database_name}; cache: Redis database {REDIS_DATABASE}; "
                "retry waits as deployed."
            )
            status = run_through_api(api_url)
        leftover = worker_processes(workdir)
        if leftover:
            print(f"worker processes left running after LocalStack stopped: {leftover}")
            status = 1
        print(f"LocalStack, its workers and the provider stopped; {time.monotonic() - started:.0f} s in all.")
        return status
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
