"""A second delivery of the same (saga, step) returns the first result and changes nothing. Each delivery is an
invocation of the step's function on the engine's worker processes, as Step Functions makes it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from chalicelib.adapters import database, saga_cache
from chalicelib.adapters.tables import AuditEvent, Order, Payment, Product, Refund, Reservation, ReturnRequestRecord
from chalicelib.service import sagas
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import FunctionError, assert_consistent, give_back, invoke, purchase


def _recorded_saga(request: Any) -> str:
    return sagas.start_saga(request, lambda *_: "arn:aws:states:us-east-1:000000000000:execution:local:x").id


def _effects() -> dict[str, Any]:
    """Everything a step can change: row counts, stock, and the audit log's length."""
    with database.UnitOfWork() as uow:
        counts = {
            model.__tablename__: uow.session.scalar(select(func.count()).select_from(model))
            for model in (Reservation, Payment, Order, Refund, ReturnRequestRecord, AuditEvent)
        }
        stock = {p.sku: (p.on_hand, p.reserved) for p in uow.session.scalars(select(Product))}
        statuses = [
            tuple(row)
            for row in uow.session.execute(
                select(Reservation.status, Payment.status).join(
                    Payment, Payment.saga_id == Reservation.saga_id, isouter=True
                )
            )
        ]
    return {"counts": counts, "stock": stock, "statuses": statuses}


def _deliver_twice(engine: LocalEngine, step: str, saga_id: str, redis_lost: bool = False) -> None:
    """The same attempt twice (Powertools' record answers the second); or, the record lost, the next attempt
    (the step finds its own effect in the database and answers as before)."""
    event = {"saga_id": saga_id, "retry_count": 0}
    first = invoke(engine, step, event)
    after_first = _effects()
    if redis_lost:
        saga_cache.get_redis().flushdb()
    second = invoke(engine, step, dict(event, retry_count=1) if redis_lost else event)
    after_second = _effects()
    assert second == first
    if redis_lost:
        # Re-executed against the database's ground truth: only the attempt is logged again.
        after_first["counts"]["audit_log"] += 1
    assert after_second == after_first


PURCHASE_STEPS = ("reserve_stock", "process_payment", "confirm_sale")
PURCHASE_COMPENSATIONS = ("refund_payment", "release_stock")


@pytest.mark.parametrize("redis_lost", [False, True], ids=["redis-record", "database-ground-truth"])
def test_every_purchase_step_and_compensation_is_idempotent(
    backend: Backend, engine: LocalEngine, redis_lost: bool
) -> None:
    saga_id = _recorded_saga(purchase(quantity=2))
    for step in (*PURCHASE_STEPS, *PURCHASE_COMPENSATIONS):
        _deliver_twice(engine, step, saga_id, redis_lost)
    assert_consistent()


@pytest.mark.parametrize("redis_lost", [False, True], ids=["redis-record", "database-ground-truth"])
def test_every_return_step_and_compensation_is_idempotent(
    backend: Backend, engine: LocalEngine, redis_lost: bool
) -> None:
    bought = _recorded_saga(purchase(quantity=2))
    for step in PURCHASE_STEPS:
        invoke(engine, step, {"saga_id": bought})
    with database.UnitOfWork() as uow:
        order_id = uow.session.scalars(select(Order.id)).one()
    saga_id = _recorded_saga(give_back(order_id, quantity=1))
    for step in ("validate_return", "issue_refund", "update_stock", "cancel_refund"):
        _deliver_twice(engine, step, saga_id, redis_lost)
    assert_consistent()


def test_concurrent_duplicate_deliveries_take_effect_once(backend: Backend, engine: LocalEngine) -> None:
    saga_id = _recorded_saga(purchase(quantity=2))
    start = threading.Barrier(4)
    outcomes: list[Any] = []

    def deliver() -> None:
        start.wait()
        try:
            outcomes.append(invoke(engine, "reserve_stock", {"saga_id": saga_id}))
        except FunctionError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    results = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert results and all(r == results[0] for r in results)
    assert all(error.error_type == "IdempotencyAlreadyInProgressError" for error in refused), refused
    with database.UnitOfWork() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Reservation)) == 1
        assert uow.session.get_one(Product, "SKU-MOUSE").reserved == 2
    # The state machine retries IdempotencyAlreadyInProgressError; the retry then gets the first result.
    assert invoke(engine, "reserve_stock", {"saga_id": saga_id, "retry_count": 1}) == results[0]
