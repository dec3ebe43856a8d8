"""Step Functions through boto3: start a saga's execution, tell whether it is alive, read its history."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.settings import get_settings

CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
"""Short enough that the API answers within API Gateway's 29 s even when Step Functions does not answer at all:
three attempts of at most 7 s, with the standard mode's backoff between them."""
ARN_FIELDS = 7
"""arn:partition:states:region:account:stateMachine:name; an alias or version ARN adds `:qualifier`."""


class StepFunctionsUnavailable(RuntimeError):
    """Step Functions could not be asked, or refused (throttled, an outage, a timeout): try again later."""


@lru_cache(maxsize=1)
def sfn_client() -> Any:
    return boto3.client("stepfunctions", endpoint_url=get_settings().aws_endpoint_url, config=CLIENT_CONFIG)


def reset_client() -> None:
    sfn_client.cache_clear()


def state_machine_arn(saga_type: str) -> str:
    """What sagas of this type start on: deployed, the state machine's alias (docs/design.md §7.3)."""
    settings = get_settings()
    arn = settings.purchase_state_machine_arn if saga_type == "purchase" else settings.return_state_machine_arn
    if not arn:
        name = "PURCHASE_STATE_MACHINE_ARN" if saga_type == "purchase" else "RETURN_STATE_MACHINE_ARN"
        raise RuntimeError(f"{name} is not set: no state machine to run {saga_type} sagas")
    return arn


def start_execution(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
    """Start the execution `name` of the saga type's state machine; its ARN.

    Names are unique per state machine (Standard): a second start with the same name and input while the first
    is open answers as the first did, and once the first has closed it is refused with ExecutionAlreadyExists
    whatever the input. Either way an execution of that name exists, so that refusal is answered with its ARN.
    """
    try:
        response = sfn_client().start_execution(
            stateMachineArn=state_machine_arn(saga_type), name=name, input=json.dumps(execution_input)
        )
    except ClientError as error:
        if _code(error) == "ExecutionAlreadyExists":
            return execution_arn_for(saga_type, name)
        raise StepFunctionsUnavailable(f"StartExecution {name}: {error}") from error
    except BotoCoreError as error:
        raise StepFunctionsUnavailable(f"StartExecution {name}: {error}") from error
    return str(response["executionArn"])


def execution_arn_for(saga_type: str, name: str) -> str:
    """The ARN of the execution `name` of this saga type: the state machine's own ARN, without the alias it was
    started through, with `:execution:` for `:stateMachine:` (executions belong to the state machine)."""
    machine = ":".join(state_machine_arn(saga_type).split(":")[:ARN_FIELDS])
    return machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def execution_status(execution_arn: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ... or None when Step Functions has no such execution."""
    try:
        return str(describe_execution(execution_arn)["status"])
    except ClientError as error:
        if _code(error) == "ExecutionDoesNotExist":
            return None
        raise StepFunctionsUnavailable(f"DescribeExecution {execution_arn}: {error}") from error
    except BotoCoreError as error:
        raise StepFunctionsUnavailable(f"DescribeExecution {execution_arn}: {error}") from error


def describe_execution(execution_arn: str) -> dict[str, Any]:
    return dict(sfn_client().describe_execution(executionArn=execution_arn))


def execution_history(execution_arn: str) -> list[dict[str, Any]]:
    paginator = sfn_client().get_paginator("get_execution_history")
    return [event for page in paginator.paginate(executionArn=execution_arn) for event in page["events"]]


def states_entered(history: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The states an execution entered, in order, each with how many times its task was attempted."""
    path: list[tuple[str, int]] = []
    for event in history:
        if event["type"].endswith("StateEntered"):
            path.append((event["stateEnteredEventDetails"]["name"], 0))
        elif event["type"] == "TaskScheduled" and path:
            name, attempts = path[-1]
            path[-1] = (name, attempts + 1)
    return path


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
