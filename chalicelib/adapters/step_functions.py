"""Step Functions through boto3: start a saga's execution, read its history."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3

from chalicelib.settings import get_settings


@lru_cache(maxsize=1)
def sfn_client() -> Any:
    return boto3.client("stepfunctions", endpoint_url=get_settings().aws_endpoint_url)


def reset_client() -> None:
    sfn_client.cache_clear()


def state_machine_arn(saga_type: str) -> str:
    settings = get_settings()
    arn = settings.purchase_state_machine_arn if saga_type == "purchase" else settings.return_state_machine_arn
    if not arn:
        name = "PURCHASE_STATE_MACHINE_ARN" if saga_type == "purchase" else "RETURN_STATE_MACHINE_ARN"
        raise RuntimeError(f"{name} is not set: no state machine to run {saga_type} sagas")
    return arn


def start_execution(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
    """Start a saga's execution. Named by the saga id, a repeated start cannot run the saga twice."""
    response = sfn_client().start_execution(
        stateMachineArn=state_machine_arn(saga_type), name=name, input=json.dumps(execution_input)
    )
    return str(response["executionArn"])


def execution_arn_for(saga_type: str, name: str) -> str:
    """The ARN an execution of this saga type started under `name` has (Step Functions derives it)."""
    return state_machine_arn(saga_type).replace(":stateMachine:", ":execution:", 1) + f":{name}"


def execution_status(execution_arn: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, ... or None when Step Functions has no such execution."""
    try:
        return str(describe_execution(execution_arn)["status"])
    except sfn_client().exceptions.ExecutionDoesNotExist:
        return None


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
