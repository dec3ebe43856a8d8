"""Every saga path as a named case of statemachines/test/MockConfigFile.json, and what its execution must do.

The same table drives two tiers: the real handlers on moto's interpreter (tests/integration/test_mock_config.py,
which also checks the mocks against what the handlers really return) and the mocked Tasks on LocalStack's
interpreter (tests/localstack/). A case's `path` is the states entered, each with its Task attempts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.domain.contracts import SagaRequest
from tests.helpers import give_back, purchase

MOCK_CONFIG_FILE = Path(__file__).resolve().parent.parent / "statemachines" / "test" / "MockConfigFile.json"
PURCHASE_MACHINE = "PurchaseSagaStateMachine"
RETURN_MACHINE = "ReturnSagaStateMachine"
"""State machine names: the template's logical ids, which the local engine and the LocalStack tier create."""


@dataclass(frozen=True)
class SagaCase:
    name: str
    machine: str
    request: Callable[[str], SagaRequest]
    """The request that drives the real handlers down this path; a return's takes the order it returns from."""
    saga_status: str
    execution_status: str
    path: tuple[tuple[str, int], ...]

    @property
    def saga_type(self) -> str:
        return "purchase" if self.machine == PURCHASE_MACHINE else "return"


CASES = (
    SagaCase(
        "HappyPath",
        PURCHASE_MACHINE,
        lambda _: purchase(),
        "COMPLETED",
        "SUCCEEDED",
        (("ReserveStock", 1), ("ProcessPayment", 1), ("ConfirmSale", 1), ("Completed", 0)),
    ),
    SagaCase(
        "OutOfStock",
        PURCHASE_MACHINE,
        lambda _: purchase(sku="SKU-MONITOR", quantity=1000),
        "REJECTED",
        "SUCCEEDED",
        (("ReserveStock", 1), ("Rejected", 0)),
    ),
    SagaCase(
        "PaymentDeclined",
        PURCHASE_MACHINE,
        lambda _: purchase(token="tok_declined"),
        "COMPENSATED",
        "SUCCEEDED",
        (("ReserveStock", 1), ("ProcessPayment", 1), ("ReleaseStock", 1), ("Compensated", 0)),
    ),
    SagaCase(
        "PaymentFlaky",
        PURCHASE_MACHINE,
        lambda _: purchase(token="tok_flaky"),
        "COMPLETED",
        "SUCCEEDED",
        (("ReserveStock", 1), ("ProcessPayment", 2), ("ConfirmSale", 1), ("Completed", 0)),
    ),
    SagaCase(
        "ConfirmSaleFails",
        PURCHASE_MACHINE,
        lambda _: purchase(confirm_sale="fail"),
        "COMPENSATED",
        "SUCCEEDED",
        (
            ("ReserveStock", 1),
            ("ProcessPayment", 1),
            ("ConfirmSale", 1),
            ("RefundPayment", 1),
            ("ReleaseStock", 1),
            ("Compensated", 0),
        ),
    ),
    SagaCase(
        "CompensationFails",
        PURCHASE_MACHINE,
        lambda _: purchase(confirm_sale="fail", refund_payment="fail"),
        "FAILED",
        "FAILED",
        (
            ("ReserveStock", 1),
            ("ProcessPayment", 1),
            ("ConfirmSale", 1),
            ("RefundPayment", 6),
            ("CompensationFailed", 1),
            ("Failed", 0),
        ),
    ),
    SagaCase(
        "ReturnOk",
        RETURN_MACHINE,
        lambda order_id: give_back(order_id, quantity=1),
        "COMPLETED",
        "SUCCEEDED",
        (("ValidateReturn", 1), ("IssueRefund", 1), ("UpdateStock", 1), ("Completed", 0)),
    ),
    SagaCase(
        "ReturnRejected",
        RETURN_MACHINE,
        lambda order_id: give_back(order_id, quantity=5),
        "REJECTED",
        "SUCCEEDED",
        (("ValidateReturn", 1), ("Rejected", 0)),
    ),
    SagaCase(
        "RestockFails",
        RETURN_MACHINE,
        lambda order_id: give_back(order_id, quantity=1, update_stock="fail"),
        "COMPENSATED",
        "SUCCEEDED",
        (("ValidateReturn", 1), ("IssueRefund", 1), ("UpdateStock", 1), ("CancelRefund", 1), ("Compensated", 0)),
    ),
)


def mock_config() -> dict[str, Any]:
    return dict(json.loads(MOCK_CONFIG_FILE.read_text()))


def mocked_attempts(case: SagaCase) -> dict[str, list[dict[str, Any]]]:
    """Per mocked Task state of the case, its responses in attempt order (`"0-5"` keys expanded)."""
    config = mock_config()
    states = config["StateMachines"][case.machine]["TestCases"][case.name]
    attempts: dict[str, list[dict[str, Any]]] = {}
    for state, response_name in states.items():
        by_attempt: dict[int, dict[str, Any]] = {}
        for key, response in config["MockedResponses"][response_name].items():
            first, _, last = key.partition("-")
            for attempt in range(int(first), int(last or first) + 1):
                by_attempt[attempt] = response
        assert sorted(by_attempt) == list(range(len(by_attempt))), f"{response_name}: attempts must be 0..n"
        attempts[state] = [by_attempt[i] for i in sorted(by_attempt)]
    return attempts


def task_events(history: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each Task event of an execution's history with the name of the state it belongs to."""
    state = ""
    for event in history:
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"].startswith("Task"):
            yield state, event


def task_outcomes(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per Task state, what each attempt gave, shaped as a mock response: {"Return": output} or {"Throw": {...}}."""
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for state, event in task_events(history):
        if event["type"] == "TaskSucceeded":
            output = json.loads(event["taskSucceededEventDetails"]["output"])
            outcomes.setdefault(state, []).append({"Return": output})
        elif event["type"] == "TaskFailed":
            details = event["taskFailedEventDetails"]
            outcomes.setdefault(state, []).append({"Throw": {"Error": details["error"], "Cause": details.get("cause")}})
    return outcomes


def shape(value: Any) -> Any:
    """A JSON value's shape: objects keep their keys, every other value becomes its type's name."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__
