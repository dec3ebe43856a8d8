"""Request and step-event contracts, fault specs and their injection, and step-event parsing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain import faults
from chalicelib.domain.contracts import (
    MAX_QUANTITY,
    Fault,
    PurchaseRequest,
    ReturnRequest,
    SagaRequest,
    StepEvent,
    TaskError,
    fault_for,
)
from chalicelib.domain.errors import InjectedFault, InvalidStepEvent, TransientFault
from chalicelib.entrypoints.step_lambda import parse_event
from chalicelib.settings import get_settings

SAGA_ID = "0123456789abcdef0123456789abcdef"
PURCHASE = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"}
RETURN = {"customer_id": "c-1", "order_id": "ord_1", "quantity": 1, "reason": "does not fit"}
REQUESTS: list[tuple[type[SagaRequest], dict[str, Any]]] = [(PurchaseRequest, PURCHASE), (ReturnRequest, RETURN)]
REQUEST_IDS = ["purchase", "return"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children)
        | st.dictionaries(st.sampled_from(["saga_id", "retry_count", "failures"]) | st.text(), children)
    ),
    max_leaves=20,
)


def _invalid_fields(model: type[SagaRequest], data: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    return {str(error["loc"][0]) for error in raised.value.errors()}


@pytest.fixture
def faults_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "allow_faults", True)


@pytest.mark.parametrize(("model", "data"), REQUESTS, ids=REQUEST_IDS)
def test_valid_requests_are_accepted(model: type[SagaRequest], data: dict[str, Any]) -> None:
    request = model.model_validate({**data, "faults": {}})

    assert request.model_dump() == {**data, "faults": {}}


def test_a_purchase_may_ask_for_faults_at_its_own_steps() -> None:
    request = PurchaseRequest.model_validate(
        {**PURCHASE, "faults": {"reserve_stock": "transient:3", "release_stock": "fail"}}
    )

    assert request.faults == {"reserve_stock": "transient:3", "release_stock": "fail"}


def test_a_return_may_ask_for_faults_at_its_own_steps() -> None:
    request = ReturnRequest.model_validate({**RETURN, "faults": {"cancel_refund": "transient:9"}})

    assert request.faults == {"cancel_refund": "transient:9"}


@pytest.mark.parametrize(("model", "data"), REQUESTS, ids=REQUEST_IDS)
def test_the_largest_quantity_is_accepted(model: type[SagaRequest], data: dict[str, Any]) -> None:
    assert model.model_validate({**data, "quantity": MAX_QUANTITY}).model_dump()["quantity"] == MAX_QUANTITY


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1, 1.5, 2.0, True, "2", None, [2]])
@pytest.mark.parametrize(("model", "data"), REQUESTS, ids=REQUEST_IDS)
def test_bad_quantities_are_refused(model: type[SagaRequest], data: dict[str, Any], quantity: object) -> None:
    assert _invalid_fields(model, {**data, "quantity": quantity}) == {"quantity"}


@pytest.mark.parametrize(("model", "data"), REQUESTS, ids=REQUEST_IDS)
def test_every_missing_field_is_named(model: type[SagaRequest], data: dict[str, Any]) -> None:
    for field in data:
        assert _invalid_fields(model, {k: v for k, v in data.items() if k != field}) == {field}


@pytest.mark.parametrize(("model", "data"), REQUESTS, ids=REQUEST_IDS)
def test_unknown_fields_are_refused(model: type[SagaRequest], data: dict[str, Any]) -> None:
    assert _invalid_fields(model, {**data, "coupon": "FREE"}) == {"coupon"}


@pytest.mark.parametrize(
    ("model", "data", "field", "value"),
    [
        (PurchaseRequest, PURCHASE, "customer_id", ""),
        (PurchaseRequest, PURCHASE, "customer_id", "c" * 65),
        (PurchaseRequest, PURCHASE, "customer_id", "has space"),
        (PurchaseRequest, PURCHASE, "customer_id", "c-1\n"),
        (PurchaseRequest, PURCHASE, "sku", ""),
        (PurchaseRequest, PURCHASE, "sku", "S" * 65),
        (PurchaseRequest, PURCHASE, "payment_token", ""),
        (PurchaseRequest, PURCHASE, "payment_token", "t" * 65),
        (PurchaseRequest, PURCHASE, "sku", 12),
        (ReturnRequest, RETURN, "order_id", ""),
        (ReturnRequest, RETURN, "order_id", "o" * 65),
        (ReturnRequest, RETURN, "reason", ""),
        (ReturnRequest, RETURN, "reason", "r" * 501),
    ],
)
def test_empty_over_long_or_malformed_strings_are_refused(
    model: type[SagaRequest],
    data: dict[str, Any],
    field: str,
    value: object,
) -> None:
    assert _invalid_fields(model, {**data, field: value}) == {field}


def test_identifiers_of_the_longest_length_are_accepted() -> None:
    request = PurchaseRequest.model_validate({**PURCHASE, "customer_id": "c" * 64})

    assert request.customer_id == "c" * 64


@pytest.mark.parametrize(
    ("model", "data", "step"),
    [
        (PurchaseRequest, PURCHASE, "issue_refund"),
        (PurchaseRequest, PURCHASE, "cancel_refund"),
        (ReturnRequest, RETURN, "reserve_stock"),
        (ReturnRequest, RETURN, "release_stock"),
        (PurchaseRequest, PURCHASE, "teleport"),
        (ReturnRequest, RETURN, "ReserveStock"),
    ],
)
def test_faults_must_name_a_step_of_the_same_saga(model: type[SagaRequest], data: dict[str, Any], step: str) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate({**data, "faults": {step: "fail"}})

    assert [error["loc"] for error in raised.value.errors()] == [("faults",)]
    assert step in str(raised.value)


@pytest.mark.parametrize(
    "spec",
    [
        *("transient:0", "transient:x", "transient:10", "transient:", "transient", "fail:1"),
        *("timeout:0", "timeout:10", "crash:x", "crash:", "explode", "FAIL", "", "fail\n"),
    ],
)
def test_bad_fault_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValidationError) as raised:
        PurchaseRequest.model_validate({**PURCHASE, "faults": {"reserve_stock": spec}})

    assert [error["loc"] for error in raised.value.errors()] == [("faults", "reserve_stock")]


def test_fault_for_parses_the_spec_of_the_step() -> None:
    asked = {
        "reserve_stock": "fail",
        "process_payment": "transient:3",
        "confirm_sale": "timeout",
        "release_stock": "timeout:2",
        "refund_payment": "crash:1",
        "cancel_refund": "crash",
    }

    assert fault_for(asked, "reserve_stock") == Fault("fail", None)
    assert fault_for(asked, "process_payment") == Fault("transient", 3)
    assert fault_for(asked, "confirm_sale") == Fault("timeout", None)
    assert fault_for(asked, "release_stock") == Fault("timeout", 2)
    assert fault_for(asked, "refund_payment") == Fault("crash", 1)
    assert fault_for(asked, "cancel_refund") == Fault("crash", None)
    assert fault_for(asked, "update_stock") is None


@pytest.mark.parametrize(
    ("fault", "hit", "spared"),
    [(Fault("crash", None), [1, 2, 9], []), (Fault("timeout", 2), [1, 2], [3, 4]), (Fault("transient", 1), [1], [2])],
)
def test_a_fault_hits_every_attempt_or_only_the_first_n(fault: Fault, hit: list[int], spared: list[int]) -> None:
    assert [fault.hits(attempt) for attempt in hit + spared] == [True] * len(hit) + [False] * len(spared)


@pytest.mark.parametrize("spec", ["transient", "fail:1", "timeout:0", "crash:10", "explode"])
def test_fault_for_refuses_a_spec_the_contract_does_not_allow(spec: str) -> None:
    with pytest.raises(ValueError, match="bad fault spec"):
        fault_for({"reserve_stock": spec}, "reserve_stock")


def test_fault_for_refuses_a_bad_spec() -> None:
    with pytest.raises(ValueError, match="explode"):
        fault_for({"reserve_stock": "explode"}, "reserve_stock")


@pytest.mark.parametrize(("retry_count", "attempt"), [(0, 1), (1, 2), (5, 6)])
def test_the_attempt_counts_from_one(retry_count: int, attempt: int) -> None:
    assert StepEvent(saga_id=SAGA_ID, retry_count=retry_count).attempt == attempt


@pytest.mark.parametrize(
    "error",
    [
        "OutOfStock",
        "PaymentDeclined",
        "PaymentProviderUnavailable",
        "DatabaseUnavailable",
        "ConcurrentUpdate",
        "SagaNotRunning",
        "InjectedFault",
        "TransientFault",
        "Lambda.TooManyRequestsException",
        "Lambda.ServiceException",
        "IdempotencyAlreadyInProgressError",
    ],
)
def test_a_declared_error_is_no_fault_of_the_definition(error: str) -> None:
    assert not TaskError(Error=error).is_fault


@pytest.mark.parametrize(
    "error",
    [
        "Lambda.Unknown",
        "Sandbox.Timedout",
        "Runtime.ExitError",
        "States.Timeout",
        "States.TaskFailed",
        "KeyError",
        "InvalidStepEvent",
        "UnknownSaga",
        "StepOutOfOrder",
        "Lambda.ResourceNotFoundException",
    ],
)
def test_a_crash_a_timeout_an_unexpected_error_or_a_refused_event_is_a_fault(error: str) -> None:
    assert TaskError(Error=error).is_fault


def test_a_step_event_may_name_its_definition_and_events_of_older_executions_name_none() -> None:
    assert StepEvent(saga_id=SAGA_ID, definition="0123456789ab").definition == "0123456789ab"
    assert StepEvent(saga_id=SAGA_ID).definition is None
    with pytest.raises(ValidationError):
        StepEvent(saga_id=SAGA_ID, definition="${DefinitionDigest} unfilled")


def test_faults_are_ignored_when_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "allow_faults", False)

    faults.inject({"reserve_stock": "fail"}, "reserve_stock", 1)
    faults.inject({"reserve_stock": "transient:3"}, "reserve_stock", 1)


@pytest.mark.usefixtures("faults_allowed")
@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_a_fail_fault_fails_every_attempt(attempt: int) -> None:
    with pytest.raises(InjectedFault, match="confirm_sale"):
        faults.inject({"confirm_sale": "fail"}, "confirm_sale", attempt)


@pytest.mark.usefixtures("faults_allowed")
def test_a_transient_fault_fails_the_first_n_attempts_only() -> None:
    for attempt in (1, 2, 3):
        with pytest.raises(TransientFault, match=f"{attempt} of 3"):
            faults.inject({"issue_refund": "transient:3"}, "issue_refund", attempt)

    faults.inject({"issue_refund": "transient:3"}, "issue_refund", 4)
    faults.inject({"issue_refund": "transient:3"}, "issue_refund", 5)


@pytest.mark.usefixtures("faults_allowed")
def test_a_fault_touches_only_the_step_it_names() -> None:
    faults.inject({"confirm_sale": "fail"}, "reserve_stock", 1)
    faults.inject({}, "reserve_stock", 1)


def test_a_well_formed_event_is_parsed() -> None:
    caught = {"Error": "Sandbox.Timedout", "Cause": '{"errorMessage": "RequestId: r-1 Error: Task timed out"}'}
    event = parse_event({"saga_id": SAGA_ID, "retry_count": 2, "failures": {"confirm_sale": caught}})

    assert (event.saga_id, event.retry_count, event.attempt) == (SAGA_ID, 2, 3)
    assert event.failures == {"confirm_sale": TaskError(Error="Sandbox.Timedout", Cause=caught["Cause"])}


@pytest.mark.parametrize(("event", "kind"), [([], "list"), ("{}", "str"), (None, "NoneType"), (7, "int")])
def test_an_event_that_is_not_an_object_is_refused(event: object, kind: str) -> None:
    with pytest.raises(InvalidStepEvent, match=kind):
        parse_event(event)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"retry_count": 0}, "saga_id"),
        ({"saga_id": "1234"}, "saga_id"),
        ({"saga_id": SAGA_ID.upper()}, "saga_id"),
        ({"saga_id": SAGA_ID + "0"}, "saga_id"),
        ({"saga_id": SAGA_ID + "\n"}, "saga_id"),
        ({"saga_id": "g" * 32}, "saga_id"),
        ({"saga_id": 12}, "saga_id"),
        ({"saga_id": SAGA_ID, "retry_count": -1}, "retry_count"),
        ({"saga_id": SAGA_ID, "retry_count": "1"}, "retry_count"),
        ({"saga_id": SAGA_ID, "retry_count": 1.0}, "retry_count"),
        ({"saga_id": SAGA_ID, "retry_limit": 5}, "retry_limit"),
        ({"saga_id": SAGA_ID, "failures": {"ship_it": {"Error": "X"}}}, "failures.ship_it.[key]"),
        ({"saga_id": SAGA_ID, "failures": {"confirm_sale": {"Cause": "no error name"}}}, "failures.confirm_sale.Error"),
        ({"saga_id": SAGA_ID, "step": "reserve_stock"}, "step"),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidStepEvent, match=rf"^{re.escape(field)}: "):
        parse_event(event)


@given(json_values)
def test_any_json_value_parses_or_is_refused_as_an_invalid_event(value: Any) -> None:
    try:
        event = parse_event(value)
    except InvalidStepEvent as error:
        assert str(error)
    else:
        assert isinstance(event, StepEvent)
        assert isinstance(value, dict)
        assert event.saga_id == value["saga_id"]


@given(st.text("0123456789abcdef", min_size=32, max_size=32), st.integers(0, 100), st.text(max_size=300))
def test_every_well_formed_event_is_parsed(saga_id: str, retry_count: int, cause: str) -> None:
    failures = {"issue_refund": {"Error": "States.Timeout", "Cause": cause}}
    event = parse_event({"saga_id": saga_id, "retry_count": retry_count, "failures": failures})

    assert (event.saga_id, event.retry_count, event.failures["issue_refund"].Cause) == (saga_id, retry_count, cause)
