"""Running a saga through the local engine and reading back what it did."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import AuditEvent, Product, Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest, step_of_state
from chalicelib.service import sagas
from infra import invariants
from infra.local_engine import LocalEngine


@dataclass(frozen=True)
class SagaRun:
    saga_id: str
    status: str
    execution_status: str
    path: list[tuple[str, int]]
    """States entered, each with its task attempts (0 for non-Task states)."""
    result: dict[str, Any]

    @property
    def states(self) -> list[str]:
        return [name for name, _ in self.path]


def run_saga(engine: LocalEngine, request: SagaRequest) -> SagaRun:
    saga = sagas.start_saga(request, step_functions.start_execution)
    return finish(engine, saga.id)


def finish(engine: LocalEngine, saga_id: str) -> SagaRun:
    with database.UnitOfWork() as uow:
        arn = uow.session.get_one(Saga, saga_id).execution_arn
    description = engine.wait(str(arn))
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        status, result = saga.status, saga.result
    path = step_functions.states_entered(step_functions.execution_history(str(arn)))
    return SagaRun(saga_id, status, description["status"], path, result)


def lambda_context() -> SimpleNamespace:
    """What the idempotency utility reads of a Lambda context: the time left."""
    return SimpleNamespace(get_remaining_time_in_millis=lambda: 30_000)


def purchase(sku: str = "SKU-MOUSE", quantity: int = 2, token: str = "tok_visa", **faults: str) -> PurchaseRequest:
    return PurchaseRequest(customer_id="c-1", sku=sku, quantity=quantity, payment_token=token, faults=faults)


def give_back(order_id: str, quantity: int = 1, **faults: str) -> ReturnRequest:
    return ReturnRequest(order_id=order_id, quantity=quantity, reason="does not fit", faults=faults)


def product(sku: str) -> Product:
    with database.UnitOfWork() as uow:
        return uow.session.get_one(Product, sku)


def audited_attempts(saga_id: str) -> dict[str, int]:
    """Per step, how many attempts the audit log holds."""
    with database.UnitOfWork() as uow:
        rows = uow.session.execute(
            select(AuditEvent.step, func.count())
            .where(AuditEvent.saga_id == saga_id, AuditEvent.step != saga_log.SAGA_EVENT)
            .group_by(AuditEvent.step)
        )
        return {step: count for step, count in rows}


def status_history(saga_id: str) -> list[str]:
    with database.UnitOfWork() as uow:
        return [e.status for e in saga_log.history(uow.session, saga_id) if e.step == saga_log.SAGA_EVENT]


def assert_consistent() -> None:
    with database.UnitOfWork() as uow:
        broken = invariants.violations(uow.session)
    assert broken == []


def assert_every_attempt_audited(run: SagaRun) -> None:
    """Each Task attempt in the execution history has its row in the audit log, and no more."""
    from_history = {step_of_state(state): attempts for state, attempts in run.path if attempts}
    assert audited_attempts(run.saga_id) == from_history


FINAL_STATUSES = frozenset({"COMPLETED", "COMPENSATED", "REJECTED", "FAILED"})


def final_view(client: Any, saga_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll `GET /sagas/{id}` through a chalice test client until the saga is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.http.get(f"/sagas/{saga_id}").json_body
        if view["status"] in FINAL_STATUSES:
            return dict(view)
        time.sleep(0.02)
    raise AssertionError(f"saga {saga_id} did not end in {timeout} s")


ROOT = Path(__file__).resolve().parent.parent


def child_env(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a tool run as a subprocess against the given data stores (and nothing inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL")}
    env |= {"DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), **extra}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env
