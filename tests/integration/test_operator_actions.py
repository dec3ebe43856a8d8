"""An operator's actions on one saga (docs/design.md §3.1): resolve a FAILED saga fixed by hand; cancel a RUNNING
one, at each step of both sagas, and against its last step.

A cancel is held at a step by that step's `timeout:2` fault: its first two attempts hang until the (one-second)
function timeout kills them, and the cancel is recorded meanwhile. Each case asserts the path through the state
machine, the audit log, the rows and the provider's ledger, then the invariants of docs/design.md §4.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import select

from app import app
from chalicelib.adapters import database, payment_provider, step_functions
from chalicelib.adapters.tables import Order, Payment, Refund, Reservation, ReturnRequestRecord, Saga
from chalicelib.domain import purchase as purchase_steps
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest, StepEvent
from chalicelib.domain.errors import ConcurrentUpdate, SagaCancelled
from chalicelib.domain.saga_log import LOST_ATTEMPT
from chalicelib.entrypoints import cli
from chalicelib.service import operator_actions, sagas, step_runner
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    SagaRun,
    assert_consistent,
    assert_every_attempt_audited,
    audit_rows,
    finish,
    product,
    provider_charges,
    purchase,
    run_saga,
    status_history,
)

HELD = "timeout:2"
"""The fault that holds a saga at a step while it is cancelled: two attempts hang until they are killed."""
RACES = 6
OPERATOR = "arn:aws:iam::123456789012:role/Operator"


@pytest.fixture
def client(backend: Backend, engine: LocalEngine) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _start(request: SagaRequest) -> str:
    return sagas.start_saga(request, step_functions.start_execution).id


def _entered(saga_id: str, state: str, timeout: float = 60.0) -> None:
    """Wait until the saga's execution has entered `state`."""
    with database.UnitOfWork() as uow:
        arn = str(uow.session.get_one(Saga, saga_id).execution_arn)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state in [name for name, _ in step_functions.states_entered(step_functions.execution_history(arn))]:
            return
        time.sleep(0.02)
    raise AssertionError(f"saga {saga_id} did not reach {state} in {timeout} s")


def _compensating(saga_id: str, timeout: float = 60.0) -> None:
    """Wait until the saga is COMPENSATING: its first compensation's attempt recorded the move before it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.UnitOfWork() as uow:
            if uow.session.get_one(Saga, saga_id).status == "COMPENSATING":
                return
        time.sleep(0.02)
    raise AssertionError(f"saga {saga_id} did not start compensating in {timeout} s")


def _cancel(client: Client, saga_id: str) -> tuple[int, dict[str, Any]]:
    response = client.http.post(f"/sagas/{saga_id}/cancel")
    return response.status_code, response.json_body


def _operator_events(saga_id: str) -> list[tuple[str, dict[str, Any]]]:
    with database.UnitOfWork() as uow:
        return [
            (event.status, event.payload)
            for event in saga_log.history(uow.session, saga_id)
            if event.step == saga_log.SAGA_EVENT and saga_log.OPERATOR_ACTION in event.payload
        ]


def _cancelled_at(engine: LocalEngine, client: Client, request: SagaRequest, state: str) -> SagaRun:
    """Start the saga, cancel it while it is held at `state` (twice: the second is a repeat), let it end."""
    saga_id = _start(request)
    _entered(saga_id, state)
    first, view = _cancel(client, saga_id)
    again, _ = _cancel(client, saga_id)
    assert (first, view["status"], again) == (202, "COMPENSATING", 202)
    return finish(engine, saga_id)


def _assert_cancelled(run: SagaRun, step: str, path: list[tuple[str, int]]) -> None:
    assert (run.status, run.execution_status, run.path) == ("CANCELLED", "SUCCEEDED", path)
    assert audit_rows(run.saga_id, step) == [
        (1, "FAILED", LOST_ATTEMPT),
        (2, "FAILED", LOST_ATTEMPT),
        (3, "FAILED", SagaCancelled.__name__),
    ], "no forward step acts once the cancel is recorded"
    assert status_history(run.saga_id) == ["RUNNING", "COMPENSATING", "CANCELLED"]
    assert _operator_events(run.saga_id) == [("COMPENSATING", {"operator_action": "cancel", "caller": "local"})]
    assert_every_attempt_audited(run)
    assert_consistent()


def _purchase_undone(saga_id: str, charged: bool) -> None:
    with database.UnitOfWork() as uow:
        reservation = uow.session.scalars(select(Reservation).where(Reservation.saga_id == saga_id)).one_or_none()
        payment = uow.session.scalars(select(Payment).where(Payment.saga_id == saga_id)).one_or_none()
        orders = uow.session.scalars(select(Order).where(Order.saga_id == saga_id)).all()
    assert orders == []
    assert reservation is None or reservation.status == "RELEASED"
    charges = provider_charges(saga_id)
    assert sum(charge.amount_cents - charge.refunded_cents for charge in charges) == 0, "the provider nets zero"
    assert [charge.amount_cents for charge in charges] == ([2 * 2_500] if charged else [])
    assert (payment.status if payment else None) == ("REFUNDED" if charged else None)
    mouse = product("SKU-MOUSE")
    assert (mouse.on_hand, mouse.reserved) == (1000, 0)


@pytest.mark.parametrize(
    ("step", "path", "charged"),
    [
        ("reserve_stock", [("ReserveStock", 3), ("RefundPayment", 1), ("ReleaseStock", 1), ("Compensated", 0)], False),
        (
            "process_payment",
            [("ReserveStock", 1), ("ProcessPayment", 3), ("RefundPayment", 1), ("ReleaseStock", 1), ("Compensated", 0)],
            False,
        ),
        (
            "confirm_sale",
            [
                ("ReserveStock", 1),
                ("ProcessPayment", 1),
                ("ConfirmSale", 3),
                ("RefundPayment", 1),
                ("ReleaseStock", 1),
                ("Compensated", 0),
            ],
            True,
        ),
    ],
)
def test_a_purchase_cancelled_at_each_step_is_undone_and_nets_zero_at_the_provider(
    backend: Backend,
    short_timeouts: LocalEngine,
    client: Client,
    step: str,
    path: list[tuple[str, int]],
    charged: bool,
) -> None:
    faults = {step: HELD}
    request = PurchaseRequest(customer_id="c-1", sku="SKU-MOUSE", quantity=2, payment_token="tok_visa", faults=faults)

    run = _cancelled_at(short_timeouts, client, request, _held_state(path))

    _assert_cancelled(run, step, path)
    _purchase_undone(run.saga_id, charged)


def _held_state(path: list[tuple[str, int]]) -> str:
    return next(state for state, attempts in path if attempts == 3)


def _bought(engine: LocalEngine) -> str:
    bought = run_saga(engine, purchase())
    assert bought.status == "COMPLETED"
    return str(bought.result["order_id"])


def _return_undone(saga_id: str, validated: bool, refunded: bool) -> None:
    with database.UnitOfWork() as uow:
        query = select(ReturnRequestRecord).where(ReturnRequestRecord.saga_id == saga_id)
        record = uow.session.scalars(query).one_or_none()
        refund = uow.session.scalars(select(Refund).where(Refund.saga_id == saga_id)).one_or_none()
    assert (record.status if record else None) == ("CLOSED" if validated else None)
    assert (refund.status if refund else None) == ("CANCELLED" if refunded else None)
    [charge] = payment_provider.provider_client().list_charges()
    assert charge.refunded_cents == 0, "the provider keeps the whole charge: nothing was given back"
    mouse = product("SKU-MOUSE")
    assert (mouse.on_hand, mouse.reserved) == (998, 0), "the goods stay sold"


@pytest.mark.parametrize(
    ("step", "path", "refunded"),
    [
        ("validate_return", [("ValidateReturn", 3), ("CancelRefund", 1), ("Compensated", 0)], False),
        ("issue_refund", [("ValidateReturn", 1), ("IssueRefund", 3), ("CancelRefund", 1), ("Compensated", 0)], False),
        (
            "update_stock",
            [("ValidateReturn", 1), ("IssueRefund", 1), ("UpdateStock", 3), ("CancelRefund", 1), ("Compensated", 0)],
            True,
        ),
    ],
)
def test_a_return_cancelled_at_each_step_closes_unrefunded(
    backend: Backend,
    short_timeouts: LocalEngine,
    client: Client,
    step: str,
    path: list[tuple[str, int]],
    refunded: bool,
) -> None:
    order_id = _bought(short_timeouts)

    request = ReturnRequest(customer_id="c-1", order_id=order_id, quantity=1, reason="no", faults={step: HELD})

    run = _cancelled_at(short_timeouts, client, request, _held_state(path))

    _assert_cancelled(run, step, path)
    _return_undone(run.saga_id, validated=step != "validate_return", refunded=refunded)


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: purchase(), "COMPLETED"),
        (lambda: purchase(token="tok_declined"), "COMPENSATED"),
        (lambda: purchase(sku="SKU-NOPE"), "REJECTED"),
        (lambda: purchase(confirm_sale="fail", refund_payment="fail"), "FAILED"),
    ],
)
def test_a_cancel_of_an_ended_saga_is_refused_and_changes_nothing(
    backend: Backend, engine: LocalEngine, client: Client, make: Callable[[], SagaRequest], status: str
) -> None:
    run = run_saga(engine, make())
    assert run.status == status
    before = status_history(run.saga_id)

    code, body = _cancel(client, run.saga_id)

    assert (code, body["error"]) == (409, "NotCancellable")
    assert status in body["message"]
    assert status_history(run.saga_id) == before
    assert _operator_events(run.saga_id) == []


def test_a_cancelled_saga_cannot_be_cancelled_again_nor_resolved(
    backend: Backend, short_timeouts: LocalEngine, client: Client
) -> None:
    run = _cancelled_at(short_timeouts, client, purchase(process_payment=HELD), "ProcessPayment")
    assert run.status == "CANCELLED"

    assert _cancel(client, run.saga_id)[0] == 409
    assert client.http.post(f"/sagas/{run.saga_id}/resolve", body='{"note": "x"}', headers=_JSON).status_code == 409
    assert client.http.post(f"/sagas/{run.saga_id}/retry").status_code == 409


def test_a_cancel_while_compensating_after_a_failure_is_refused_and_the_compensation_goes_on(
    backend: Backend, short_timeouts: LocalEngine, client: Client
) -> None:
    saga_id = _start(purchase(confirm_sale="fail", refund_payment=HELD))
    _compensating(saga_id)

    code, body = _cancel(client, saga_id)
    run = finish(short_timeouts, saga_id)

    assert (code, body["error"]) == (409, "NotCancellable")
    assert "compensation goes on" in body["message"]
    assert (run.status, run.path[-1]) == ("COMPENSATED", ("Compensated", 0))
    assert _operator_events(saga_id) == []
    assert_consistent()


def test_a_cancel_racing_the_last_step_ends_completed_or_cancelled_never_both_never_with_money_held(
    backend: Backend, engine: LocalEngine, client: Client
) -> None:
    saga_ids = [_start(purchase()) for _ in range(RACES)]

    def cancel_when_confirming(saga_id: str) -> int:
        _entered(saga_id, "ConfirmSale")
        return _cancel(client, saga_id)[0]

    with ThreadPoolExecutor(RACES) as pool:
        answers = list(pool.map(cancel_when_confirming, saga_ids))
    runs = [finish(engine, saga_id) for saga_id in saga_ids]

    for run, answer in zip(runs, answers, strict=True):
        history = status_history(run.saga_id)
        assert (run.status, answer) in {("COMPLETED", 409), ("CANCELLED", 202)}
        assert not {"COMPLETED", "CANCELLED"} <= set(history), history
        charges = provider_charges(run.saga_id)
        net = sum(charge.amount_cents - charge.refunded_cents for charge in charges)
        assert net == (2 * 2_500 if run.status == "COMPLETED" else 0)
    assert_consistent()


def _paid_purchase() -> str:
    """A purchase whose stock is reserved and payment captured, its steps run here, in this process, so that a
    cancel can be interleaved with its last step exactly."""
    saga_id = sagas.start_saga(purchase(), lambda saga_type, name, execution_input: f"arn:local:{name}").id
    for step in (purchase_steps.reserve_stock, purchase_steps.process_payment):
        step_runner.run_step(step, StepEvent(saga_id=saga_id))
    return saga_id


def test_a_cancel_committed_while_the_last_step_runs_wins_and_the_step_s_commit_loses(
    backend: Backend, engine: LocalEngine
) -> None:
    """The interleaving forced: the cancel commits after the last step read the saga RUNNING, before it commits.
    SQLite runs one writing transaction at a time (BEGIN IMMEDIATE), so there the cancel waits for the step's commit
    and finds the saga COMPLETED; on PostgreSQL and MySQL the saga's version makes the step's commit fail."""
    saga_id = _paid_purchase()
    answers: list[str] = []

    def cancel() -> None:
        try:
            operator_actions.cancel(saga_id, OPERATOR)
            answers.append("cancelled")
        except operator_actions.NotActionable as refused:
            answers.append(str(refused))

    racer = threading.Thread(target=cancel)

    def confirm_sale(session: Any, saga: Saga, attempt: int) -> dict[str, Any]:
        racer.start()
        if backend.name != "embedded":
            racer.join()
        return purchase_steps.confirm_sale(session, saga, attempt)

    if backend.name == "embedded":
        step_runner.run_step(confirm_sale, StepEvent(saga_id=saga_id))
        racer.join()
        assert answers == [f"saga {saga_id} is COMPLETED; only a RUNNING saga can be cancelled"]
        assert status_history(saga_id) == ["RUNNING", "COMPLETED"]
        return
    with pytest.raises(ConcurrentUpdate):
        step_runner.run_step(confirm_sale, StepEvent(saga_id=saga_id))
    assert answers == ["cancelled"]
    with pytest.raises(SagaCancelled):
        step_runner.run_step(purchase_steps.confirm_sale, StepEvent(saga_id=saga_id, retry_count=1))
    for compensation in (purchase_steps.refund_payment, purchase_steps.release_stock):
        step_runner.run_step(compensation, StepEvent(saga_id=saga_id))

    assert status_history(saga_id) == ["RUNNING", "COMPENSATING", "CANCELLED"]
    assert _operator_events(saga_id) == [("COMPENSATING", {"operator_action": "cancel", "caller": OPERATOR})]
    _purchase_undone(saga_id, charged=True)
    assert_consistent()


_JSON = {"Content-Type": "application/json"}


def _failed(engine: LocalEngine) -> str:
    run = run_saga(engine, purchase(confirm_sale="fail", refund_payment="fail"))
    assert run.status == "FAILED"
    return run.saga_id


def test_resolving_a_failed_saga_ends_it_resolved_with_the_note_and_the_caller_in_its_history(
    backend: Backend, engine: LocalEngine, client: Client
) -> None:
    saga_id = _failed(engine)

    response = client.http.post(
        f"/sagas/{saga_id}/resolve", body='{"note": "refunded by hand, ticket OPS-12"}', headers=_JSON
    )

    assert (response.status_code, response.json_body["status"]) == (202, "RESOLVED")
    assert client.http.get(f"/sagas/{saga_id}").json_body["status"] == "RESOLVED"
    assert status_history(saga_id) == ["RUNNING", "COMPENSATING", "FAILED", "RESOLVED"]
    events = client.http.get(f"/sagas/{saga_id}/history").json_body["events"]
    assert events[-1]["status"] == "RESOLVED"
    assert events[-1]["payload"] == {
        "operator_action": "resolve",
        "caller": "local",
        "note": "refunded by hand, ticket OPS-12",
    }
    assert client.http.post(f"/sagas/{saga_id}/retry").status_code == 409, "RESOLVED is final"
    again = client.http.post(f"/sagas/{saga_id}/resolve", body='{"note": "again"}', headers=_JSON)
    assert (again.status_code, again.json_body["error"]) == (409, "NotResolvable")


def test_a_resolve_names_its_caller_the_principal_api_gateway_verified(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _failed(engine)

    operator_actions.resolve(saga_id, "fixed", OPERATOR)

    assert _operator_events(saga_id) == [
        ("RESOLVED", {"operator_action": "resolve", "caller": OPERATOR, "note": "fixed"})
    ]


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: purchase(), "COMPLETED"),
        (lambda: purchase(token="tok_declined"), "COMPENSATED"),
        (lambda: purchase(sku="SKU-NOPE"), "REJECTED"),
    ],
)
def test_resolving_a_saga_that_is_not_failed_is_refused(
    backend: Backend, engine: LocalEngine, client: Client, make: Callable[[], SagaRequest], status: str
) -> None:
    run = run_saga(engine, make())

    response = client.http.post(f"/sagas/{run.saga_id}/resolve", body='{"note": "x"}', headers=_JSON)

    assert (response.status_code, response.json_body["error"]) == (409, "NotResolvable")
    assert f"is {status}" in response.json_body["message"]
    assert status_history(run.saga_id)[-1] == status


def test_resolving_a_running_saga_is_refused(backend: Backend, short_timeouts: LocalEngine, client: Client) -> None:
    saga_id = _start(purchase(process_payment=HELD))
    _entered(saga_id, "ProcessPayment")

    response = client.http.post(f"/sagas/{saga_id}/resolve", body='{"note": "x"}', headers=_JSON)

    assert (response.status_code, response.json_body["error"]) == (409, "NotResolvable")
    assert finish(short_timeouts, saga_id).status == "COMPLETED"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{}", "Field required"),
        ('{"note": ""}', "at least 1 character"),
        ('{"note": "' + "x" * 501 + '"}', "at most 500 characters"),
        ('{"note": 7}', "valid string"),
        ('{"note": "x", "by": "me"}', "Extra inputs"),
    ],
)
def test_a_resolve_without_a_usable_note_is_a_400_naming_it(
    backend: Backend, engine: LocalEngine, client: Client, body: str, problem: str
) -> None:
    saga_id = _failed(engine)

    response = client.http.post(f"/sagas/{saga_id}/resolve", body=body, headers=_JSON)

    assert response.status_code == 400
    [detail] = response.json_body["details"]
    assert detail["field"] in ("note", "by")
    assert problem in detail["problem"]
    assert status_history(saga_id)[-1] == "FAILED"


def test_an_action_on_an_unknown_saga_is_a_404(backend: Backend, client: Client) -> None:
    for path in (f"/sagas/{'0' * 32}/cancel", "/sagas/not-a-saga/cancel"):
        assert client.http.post(path).status_code == 404
    for saga_id in ("0" * 32, "not-a-saga"):
        response = client.http.post(f"/sagas/{saga_id}/resolve", body='{"note": "x"}', headers=_JSON)
        assert response.status_code == 404


# The CLI's words and exit codes; the resolve and the cancel it calls are tested above on every backend.
@pytest.mark.backends("embedded")
def test_the_command_line_resolves_and_cancels(
    backend: Backend, short_timeouts: LocalEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = _failed(short_timeouts)
    assert cli.main(["resolve", failed, "--note", "settled with the customer"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "status   RESOLVED"
    assert cli.main(["history", failed]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("resolve by local: settled with the customer")
    assert cli.main(["resolve", failed, "--note", ""]) == 1
    assert "--note" in capsys.readouterr().err

    held = _start(purchase(process_payment=HELD))
    _entered(held, "ProcessPayment")
    assert cli.main(["cancel", held]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "status   COMPENSATING"
    assert finish(short_timeouts, held).status == "CANCELLED"
    assert cli.main(["cancel", held]) == 1
    assert "only a RUNNING saga can be cancelled" in capsys.readouterr().err
