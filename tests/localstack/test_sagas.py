"""Every saga path on LocalStack's own Step Functions interpreter, Tasks answered by MockConfigFile.json.

Both state machines are created from the repository's definitions (function ARNs substituted as the template
does; no function needs to exist for a mocked Task). Each named test case runs as an execution started on
`<state machine ARN>#<TestCase>`, all at once: the compensation retries wait for real (2 s, x2, full jitter).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.adapters.step_functions import states_entered
from infra.deploy.localstack.host import HostLocalStack
from infra.engine.local_engine import load_template, state_machine_definition
from tests.localstack.conftest import REGION
from tests.saga_cases import CASES, SagaCase, mocked_attempts, task_events, task_outcomes
from tests.template_refs import invoked_function

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/saga-local-states"
EXECUTIONS_TIMEOUT_SECONDS = 180.0
FINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _function_arn(value: Any) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{invoked_function(value)}:live"


@pytest.fixture(scope="module")
def state_machines(aws: Callable[[str], Any]) -> dict[str, str]:
    sfn = aws("stepfunctions")
    machines = {}
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            definition = state_machine_definition(resource["Properties"], _function_arn)
            created = sfn.create_state_machine(name=logical_id, definition=definition, roleArn=ROLE)
            machines[logical_id] = created["stateMachineArn"]
    return machines


@pytest.fixture(scope="module")
def finished(aws: Callable[[str], Any], state_machines: dict[str, str]) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    """Per case: the execution's description and history, all cases run concurrently."""
    sfn = aws("stepfunctions")
    started = {}
    for case in CASES:
        execution_input = {
            "saga_id": f"saga-{case.name}",
            "type": case.saga_type,
            "request": case.request("order-1").model_dump(mode="json"),
            "correlation_id": f"corr-{case.name}",
        }
        started[case.name] = sfn.start_execution(
            stateMachineArn=f"{state_machines[case.machine]}#{case.name}",
            name=case.name,
            input=json.dumps(execution_input),
        )["executionArn"]
    deadline = time.monotonic() + EXECUTIONS_TIMEOUT_SECONDS
    descriptions: dict[str, dict[str, Any]] = {}
    while len(descriptions) < len(started):
        for name, arn in started.items():
            if name not in descriptions:
                description = sfn.describe_execution(executionArn=arn)
                if description["status"] in FINAL:
                    descriptions[name] = description
        if time.monotonic() > deadline:
            running = sorted(set(started) - set(descriptions))
            raise AssertionError(f"executions still running after {EXECUTIONS_TIMEOUT_SECONDS:.0f} s: {running}")
        time.sleep(0.2)
    return {
        name: (descriptions[name], sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])
        for name, arn in started.items()
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_case_ends_as_expected_after_the_exact_states_and_attempts(
    finished: dict[str, tuple[dict[str, Any], list[Any]]], case: SagaCase
) -> None:
    description, history = finished[case.name]
    assert description["status"] == case.execution_status
    assert tuple(states_entered(history)) == case.path


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_task_attempt_got_its_mocked_answer_and_its_retry_count(
    finished: dict[str, tuple[dict[str, Any], list[Any]]], case: SagaCase
) -> None:
    _, history = finished[case.name]
    assert task_outcomes(history) == mocked_attempts(case)
    counts: dict[str, list[int]] = {}
    for state, event in task_events(history):
        if event["type"] == "TaskScheduled":
            parameters = json.loads(event["taskScheduledEventDetails"]["parameters"])
            counts.setdefault(state, []).append(parameters["Payload"]["retry_count"])
    assert counts == {name: list(range(attempts)) for name, attempts in case.path if attempts}


def test_a_completed_saga_carries_each_steps_mocked_result_in_its_output(
    finished: dict[str, tuple[dict[str, Any], list[Any]]],
) -> None:
    description, _ = finished["HappyPath"]
    output = json.loads(description["output"])
    mocked = mocked_attempts(next(case for case in CASES if case.name == "HappyPath"))
    assert output["order"]["result"] == mocked["ConfirmSale"][0]["Return"]["Payload"]
    assert output["correlation_id"] == "corr-HappyPath"


def test_localstack_listens_on_loopback_only(localstack: HostLocalStack) -> None:
    addresses = localstack.listening_addresses()
    assert f"127.0.0.1:{localstack.port}" in addresses
    assert all(address.startswith("127.0.0.1:") for address in addresses), addresses
