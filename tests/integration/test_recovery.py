"""Sagas cut short by a dead process are brought to a final status by running their execution again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update

from chalicelib import db, executions, recovery, sagas
from chalicelib.models import Payment, Reservation, Saga
from functions import confirm_sale, process_payment, refund_payment, reserve_stock
from infra.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import assert_consistent, finish, lambda_context, purchase

LOST = "arn:aws:states:us-east-1:123456789012:execution:PurchaseSagaStateMachine:lost"


def _recorded(request: Any, arn: str | None = LOST) -> str:
    """A saga whose record exists but whose execution died with the process (or never started)."""
    saga_id = sagas.start_saga(request, lambda *_: LOST).id
    with db.UnitOfWork() as uow:
        uow.session.execute(update(Saga).where(Saga.id == saga_id).values(execution_arn=arn))
        uow.commit()
    return saga_id


def _deliver(saga_id: str, *handlers: Callable[[Any, Any], Any]) -> None:
    for handler in handlers:
        with contextlib.suppress(Exception):
            handler({"saga_id": saga_id}, lambda_context())


def _count(model: type[Any], saga_id: str) -> int:
    with db.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(model.saga_id == saga_id)) or 0)


def test_a_saga_whose_execution_never_started_is_run(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _recorded(purchase(), arn=None)

    assert recovery.resume_unfinished(executions.start_execution, executions.execution_status) == [saga_id]

    assert finish(engine, saga_id).status == "COMPLETED"
    assert_consistent()


def test_a_saga_cut_after_two_steps_completes_without_a_second_reservation_or_charge(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = _recorded(purchase())
    _deliver(saga_id, reserve_stock.lambda_handler, process_payment.lambda_handler)

    recovery.resume_unfinished(executions.start_execution, executions.execution_status)

    run = finish(engine, saga_id)
    assert run.status == "COMPLETED"
    assert run.path[-1] == ("Completed", 0)
    assert _count(Reservation, saga_id) == _count(Payment, saga_id) == 1
    assert_consistent()


def test_a_saga_cut_while_compensating_ends_compensated(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _recorded(purchase(confirm_sale="fail"))
    _deliver(
        saga_id,
        reserve_stock.lambda_handler,
        process_payment.lambda_handler,
        confirm_sale.lambda_handler,
        refund_payment.lambda_handler,
    )
    with db.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, saga_id).status == "COMPENSATING"

    recovery.resume_unfinished(executions.start_execution, executions.execution_status)

    assert finish(engine, saga_id).status == "COMPENSATED"
    assert_consistent()


def test_running_and_final_sagas_are_left_alone(backend: Backend, engine: LocalEngine) -> None:
    done = finish(engine, sagas.start_saga(purchase(), executions.start_execution).id)
    running = _recorded(purchase())

    resumed = recovery.resume_unfinished(
        pytest.fail, lambda arn: "RUNNING" if arn == LOST else executions.execution_status(arn)
    )

    assert resumed == []
    with db.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, done.saga_id).status == "COMPLETED"
        assert uow.session.get_one(Saga, running).status == "RUNNING"
