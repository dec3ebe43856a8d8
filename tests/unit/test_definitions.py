"""The ASL definitions agree with template.yaml, the step handlers, the error classes and each other."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from statelint.linter import Linter

from chalicelib.domain import errors
from chalicelib.domain.contracts import COMPENSATIONS, SagaStatus, StepEvent, step_of_state
from chalicelib.service.step_runner import ENDS_SAGA_ON_SUCCESS
from infra.engine.local_engine import ROOT, load_template
from tests.template_refs import function_substitutions, invoked_function

Definition = dict[str, Any]
State = dict[str, Any]

RESOURCES: dict[str, Any] = load_template()["Resources"]
MACHINES = sorted(k for k, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
}
"""The transient Lambda errors AWS's "Handle Lambda service exceptions" page says to retry."""
KILLED = {"Sandbox.Timedout", "Lambda.Unknown", "Runtime.ExitError", "States.Timeout"}
"""What a timeout (the function's, the Task's) and a process that died are reported as."""
THROTTLED = "Lambda.TooManyRequestsException"
BUSINESS_ERRORS = {"OutOfStock", "UnknownProduct", "PaymentDeclined", "ReturnRejected"}
BUSINESS_ERRORS |= {"InjectedFault", "InvalidStepEvent", "UnknownSaga"}
ERROR_CLASSES: list[type[errors.StepError]] = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.StepError) and cls.__module__ == errors.__name__
]
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
TERMINALS = {"Completed": "Succeed", "Rejected": "Succeed", "Compensated": "Succeed", "Failed": "Fail"}
RECORDS_FAILURE = "CompensationFailed"
"""The Task on the path of a compensation that gave up; not a step of the saga."""
OUTCOME_STATES = {SagaStatus.COMPLETED: "Completed", SagaStatus.COMPENSATED: "Compensated"}
UNDOES = {"ReleaseStock": "ReserveStock", "RefundPayment": "ProcessPayment", "CancelRefund": "IssueRefund"}
"""Which forward step each compensation undoes."""


def _definition_path(machine: str) -> Path:
    return ROOT / str(RESOURCES[machine]["Properties"]["DefinitionUri"])


def _definition(machine: str) -> Definition:
    return dict(json.loads(_definition_path(machine).read_text()))


def _tasks(definition: Definition) -> dict[str, State]:
    return {name: s for name, s in definition["States"].items() if s["Type"] == "Task"}


def _is_compensation(name: str) -> bool:
    return step_of_state(name) in COMPENSATIONS


def _forward_tasks(definition: Definition) -> dict[str, State]:
    return {n: s for n, s in _tasks(definition).items() if not _is_compensation(n) and n != RECORDS_FAILURE}


def _compensations(definition: Definition) -> dict[str, State]:
    return {n: s for n, s in _tasks(definition).items() if _is_compensation(n)}


def _retried(state: State) -> set[str]:
    return {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}


def _successors(state: State) -> list[str]:
    targets = [catcher["Next"] for catcher in state.get("Catch", [])]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [state[key] for key in ("Next", "Default") if key in state]
    return targets


def _paths(definition: Definition) -> list[list[str]]:
    """Every path from StartAt to a state without successors (the machines have no loops)."""
    paths: list[list[str]] = []
    pending = [[definition["StartAt"]]]
    while pending:
        path = pending.pop()
        successors = _successors(definition["States"][path[-1]])
        if not successors:
            paths.append(path)
        for successor in successors:
            assert successor not in path, f"loop: {[*path, successor]}"
            pending.append([*path, successor])
    return paths


def _forward_order(definition: Definition) -> list[str]:
    order = [definition["StartAt"]]
    while (following := definition["States"][order[-1]].get("Next")) in _forward_tasks(definition):
        order.append(following)
    return order


@pytest.fixture(params=MACHINES)
def machine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def definition(machine: str) -> Definition:
    return _definition(machine)


def test_the_template_deploys_every_definition_file() -> None:
    deployed = {_definition_path(machine) for machine in MACHINES}

    assert deployed == set((ROOT / "statemachines").glob("*.asl.json"))


def test_statelint_finds_no_problem(machine: str) -> None:
    assert Linter.validate(str(_definition_path(machine))) == []


def test_every_task_invokes_a_lambda_through_a_placeholder(machine: str, definition: Definition) -> None:
    for name, state in _tasks(definition).items():
        assert state["Resource"] == LAMBDA_INVOKE, name
        assert re.fullmatch(r"\$\{\w+FunctionArn\}", state["Parameters"]["FunctionName"]), name
    assert "arn:aws:lambda" not in _definition_path(machine).read_text()


def test_placeholders_are_exactly_the_definition_substitutions(machine: str) -> None:
    placeholders = set(PLACEHOLDER.findall(_definition_path(machine).read_text()))

    assert placeholders == set(RESOURCES[machine]["Properties"]["DefinitionSubstitutions"])


def test_each_task_invokes_the_function_named_after_its_state(machine: str, definition: Definition) -> None:
    substitutions = RESOURCES[machine]["Properties"]["DefinitionSubstitutions"]
    for name, state in _tasks(definition).items():
        key = PLACEHOLDER.fullmatch(state["Parameters"]["FunctionName"]).group(1)  # type: ignore[union-attr]
        function = RESOURCES[invoked_function(substitutions[key])]
        module_name, _, handler_name = function["Properties"]["Handler"].rpartition(".")

        assert function["Type"] == "AWS::Serverless::Function", name
        assert module_name == f"functions.{step_of_state(name)}"
        assert callable(getattr(importlib.import_module(module_name), handler_name)), name


def test_each_machine_may_invoke_exactly_the_functions_it_references(machine: str) -> None:
    properties = RESOURCES[machine]["Properties"]
    referenced = {invoked_function(value) for value in function_substitutions(properties).values()}
    allowed = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in properties["Policies"]
        if "LambdaInvokePolicy" in policy
    }

    assert allowed == referenced


NOT_STEPS = {"APIHandler", "MigrateFunction", "ReconcilerFunction", "BulkRetryFunction"}
"""The template's functions that no state machine invokes: the API, the migration and the reconciler."""


def test_every_function_of_the_template_but_the_api_migration_reconciler_and_bulk_retries_is_invoked_by_a_saga() -> (
    None
):
    functions = {k for k, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"} - NOT_STEPS
    substitutions = [function_substitutions(RESOURCES[m]["Properties"]) for m in MACHINES]
    referenced = {invoked_function(value) for subs in substitutions for value in subs.values()}

    assert referenced == functions


def test_every_task_sends_a_step_event(definition: Definition) -> None:
    for name, state in _tasks(definition).items():
        payload = state["Parameters"]["Payload"]
        assert payload["saga_id.$"] == "$.saga_id", name
        assert payload["retry_count.$"] == "$$.State.RetryCount", name
        assert {key.removesuffix(".$") for key in payload} <= set(StepEvent.model_fields), name


def test_forward_steps_retry_lambda_service_errors_and_provider_outage(definition: Definition) -> None:
    for name, state in _forward_tasks(definition).items():
        assert _retried(state) >= LAMBDA_SERVICE_ERRORS | {"PaymentProviderUnavailable"}, name


def test_forward_steps_are_idempotent_so_they_retry_what_a_timeout_a_crash_and_a_throttle_produce(
    definition: Definition,
) -> None:
    for name, state in _forward_tasks(definition).items():
        assert _retried(state) >= KILLED | {THROTTLED}, name


def test_a_throttle_has_a_retrier_of_its_own_long_enough_for_a_burst(definition: Definition) -> None:
    for name, state in _forward_tasks(definition).items():
        [throttled] = [retrier for retrier in state["Retry"] if THROTTLED in retrier["ErrorEquals"]]
        assert throttled["ErrorEquals"] == [THROTTLED], name
        assert throttled["MaxAttempts"] >= 10, name
        ceilings = [
            min(throttled["IntervalSeconds"] * throttled["BackoffRate"] ** n, throttled["MaxDelaySeconds"])
            for n in range(throttled["MaxAttempts"])
        ]
        assert sum(ceilings) >= 60, name  # full jitter waits half of that on average


def test_every_task_times_out_after_its_function_would(definition: Definition) -> None:
    function_timeout = load_template()["Globals"]["Function"]["Timeout"]
    for name, state in _tasks(definition).items():
        assert state["TimeoutSeconds"] > function_timeout, name


def test_business_errors_are_never_retried(definition: Definition) -> None:
    for name, state in definition["States"].items():
        assert _retried(state) & BUSINESS_ERRORS == set(), name


def test_forward_steps_retry_an_error_class_exactly_when_it_is_retryable(definition: Definition) -> None:
    for name, state in _forward_tasks(definition).items():
        wrong = [cls.__name__ for cls in ERROR_CLASSES if (cls.__name__ in _retried(state)) != cls.retryable]
        assert wrong == [], name


def test_every_error_class_says_whether_it_is_retryable() -> None:
    defined = {cls for _, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__}

    assert defined == set(ERROR_CLASSES)


def test_forward_steps_retry_only_errors_that_exist(definition: Definition) -> None:
    retryable = {cls.__name__ for cls in ERROR_CLASSES if cls.retryable}
    known = LAMBDA_SERVICE_ERRORS | KILLED | {THROTTLED} | retryable | {IdempotencyAlreadyInProgressError.__name__}
    for name, state in _forward_tasks(definition).items():
        assert _retried(state) <= known, name


def test_every_retrier_backs_off_with_full_jitter(definition: Definition) -> None:
    for name, state in definition["States"].items():
        for retrier in state.get("Retry", []):
            assert retrier["IntervalSeconds"] >= 1, name
            assert retrier["BackoffRate"] > 1, name
            assert retrier["MaxAttempts"] >= 1, name
            assert retrier["MaxDelaySeconds"] >= retrier["IntervalSeconds"], name
            assert retrier["JitterStrategy"] == "FULL", name


def test_compensations_retry_every_error_and_learn_what_failed(definition: Definition) -> None:
    for name, state in _compensations(definition).items():
        [retrier] = state["Retry"]
        assert retrier["ErrorEquals"] == ["States.ALL"], name
        assert state["Parameters"]["Payload"]["failures.$"] == "$.failures", name


def test_forward_steps_are_not_told_what_failed(definition: Definition) -> None:
    for name, state in _forward_tasks(definition).items():
        assert "failures.$" not in state["Parameters"]["Payload"], name


def test_every_compensation_of_the_contracts_is_a_state() -> None:
    states = {step_of_state(name) for machine in MACHINES for name in _definition(machine)["States"]}

    assert states >= COMPENSATIONS
    assert {step_of_state(name) for name in UNDOES} == COMPENSATIONS


def test_every_catch_keeps_the_input_records_the_error_under_its_step_and_goes_to_an_existing_state(
    definition: Definition,
) -> None:
    for name, state in definition["States"].items():
        for catcher in state.get("Catch", []):
            assert catcher["ResultPath"] == f"$.failures.{step_of_state(name)}", name
            assert catcher["Next"] in definition["States"], name


def test_catches_name_only_known_errors(definition: Definition) -> None:
    known = {"States.ALL"} | {cls.__name__ for cls in ERROR_CLASSES}
    for name, state in definition["States"].items():
        for catcher in state.get("Catch", []):
            assert set(catcher["ErrorEquals"]) <= known, name


def test_only_rejections_end_the_saga_rejected() -> None:
    caught = {
        error
        for machine in MACHINES
        for state in _definition(machine)["States"].values()
        for catcher in state.get("Catch", [])
        if catcher["Next"] == "Rejected"
        for error in catcher["ErrorEquals"]
    }

    assert caught == {cls.__name__ for cls in errors.REJECTIONS}


def test_a_failed_compensation_is_recorded_by_the_path_then_ends_in_the_fail_state(definition: Definition) -> None:
    for name, state in _compensations(definition).items():
        assert state["Catch"], name
        for catcher in state["Catch"]:
            assert catcher["Next"] == RECORDS_FAILURE, name
    recorder = definition["States"][RECORDS_FAILURE]
    assert recorder["Parameters"]["Payload"]["failures.$"] == "$.failures"
    assert recorder["Retry"][0]["ErrorEquals"] == ["States.ALL"]
    assert {catcher["Next"] for catcher in recorder["Catch"]} == {recorder["Next"]} == {"Failed"}


def test_each_machine_has_the_four_terminal_states(definition: Definition) -> None:
    terminal = {n: s["Type"] for n, s in definition["States"].items() if not _successors(s) or s.get("End")}

    assert terminal == TERMINALS


def test_the_machine_and_every_state_have_a_comment(definition: Definition) -> None:
    assert definition["Comment"].strip()
    for name, state in definition["States"].items():
        assert state.get("Comment", "").strip(), name


def test_every_path_through_a_compensation_ends_compensated_or_failed(definition: Definition) -> None:
    for path in _paths(definition):
        if any(_is_compensation(state) for state in path):
            assert path[-1] in {"Compensated", "Failed"}, path
        else:
            assert path[-1] in {"Completed", "Rejected"}, path


def test_compensations_run_in_reverse_order_of_their_forward_steps(definition: Definition) -> None:
    forward = _forward_order(definition)
    for path in _paths(definition):
        undone = [forward.index(UNDOES[state]) for state in path if _is_compensation(state)]
        assert undone == sorted(undone, reverse=True), path


def test_purchase_refunds_the_payment_before_releasing_the_stock() -> None:
    assert _definition("PurchaseSagaStateMachine")["States"]["RefundPayment"]["Next"] == "ReleaseStock"


def test_a_failed_step_undoes_every_earlier_step(definition: Definition) -> None:
    forward = _forward_order(definition)
    for position, name in enumerate(forward):
        earlier = {step for step in forward[:position] if step in UNDOES.values()}
        for catcher in definition["States"][name].get("Catch", []):
            if catcher["Next"] == "Rejected":
                continue
            undone, current = set(), catcher["Next"]
            while _is_compensation(current):
                undone.add(UNDOES[current])
                current = definition["States"][current]["Next"]
            assert undone >= earlier, (name, catcher["ErrorEquals"])


def test_the_steps_that_end_a_saga_lead_to_its_outcome_state() -> None:
    tasks = {name: state for machine in MACHINES for name, state in _tasks(_definition(machine)).items()}
    leading_to_outcome = {
        step_of_state(name): state["Next"]
        for name, state in tasks.items()
        if state.get("Next") in OUTCOME_STATES.values()
    }

    expected = {step: OUTCOME_STATES[status] for step, status in ENDS_SAGA_ON_SUCCESS.items()}
    assert leading_to_outcome == expected
