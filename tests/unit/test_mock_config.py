"""statemachines/test/MockConfigFile.json is well formed and names only what our code and definitions have."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from chalicelib.domain import errors
from tests.saga_cases import CASES, RETURN_MACHINE, mock_config, mocked_attempts

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = {
    "PurchaseSagaStateMachine": ROOT / "statemachines" / "purchase_saga.asl.json",
    RETURN_MACHINE: ROOT / "statemachines" / "return_saga.asl.json",
}
STEP_ERRORS = {
    name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, errors.StepError)
}


def test_every_saga_case_has_its_test_case_and_no_test_case_is_unchecked() -> None:
    config = mock_config()
    in_file = {(machine, case) for machine, m in config["StateMachines"].items() for case in m["TestCases"]}
    assert in_file == {(case.machine, case.name) for case in CASES}


def test_the_required_paths_are_all_named() -> None:
    required = {"HappyPath", "OutOfStock", "PaymentDeclined", "PaymentFlaky", "ConfirmSaleFails", "CompensationFails"}
    required |= {"ReturnOk", "ReturnRejected", "RestockFails"}
    assert required <= {case.name for case in CASES}


def test_mocked_states_are_task_states_of_their_machine_and_the_path_enters_each() -> None:
    for case in CASES:
        states = json.loads(DEFINITIONS[case.machine].read_text())["States"]
        tasks = {name for name, state in states.items() if state["Type"] == "Task"}
        attempts = mocked_attempts(case)
        assert set(attempts) <= tasks, case.name
        assert {name for name, state in case.path if name in tasks} == set(attempts), case.name
        assert all(name in states for name, _ in case.path), case.name


def test_each_mock_answers_like_a_lambda_invoke_or_throws_an_error_our_code_defines() -> None:
    for name, response in mock_config()["MockedResponses"].items():
        for attempt in response.values():
            assert len(attempt) == 1 and set(attempt) <= {"Return", "Throw"}, name
            if "Return" in attempt:
                assert set(attempt["Return"]) == {"StatusCode", "Payload"}, name
                assert attempt["Return"]["StatusCode"] == 200, name
                assert isinstance(attempt["Return"]["Payload"], dict), name
            else:
                assert attempt["Throw"]["Error"] in STEP_ERRORS, (
                    f"{name} throws an error chalicelib/domain/errors.py lacks"
                )
                assert attempt["Throw"]["Cause"], name


def test_the_flaky_payment_throws_a_retryable_error_first() -> None:
    flaky = next(case for case in CASES if case.name == "PaymentFlaky")
    first = mocked_attempts(flaky)["ProcessPayment"][0]["Throw"]["Error"]
    assert getattr(errors, first).retryable
