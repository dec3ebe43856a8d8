"""Running a saga through the local engine and reading back what it did."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest
from sqlalchemy import create_engine, delete, func, select, text
from sqlalchemy import event as sql_event

from chalicelib.adapters import database, payment_provider, step_functions
from chalicelib.adapters.payment_provider import Charge, PaymentProviderClient
from chalicelib.adapters.tables import AuditEvent, Product, Saga, StockBucket
from chalicelib.domain import saga_log, stock
from chalicelib.domain.contracts import (
    PurchaseRequest,
    ReturnRequest,
    SagaRequest,
    SagaStatus,
    state_of_step,
    step_of_state,
)
from chalicelib.service import recovery, sagas
from chalicelib.service.executions import StepFunctions, boto3_step_functions
from infra.engine.local_engine import LocalEngine
from infra.tools import invariants


class FunctionLogs:
    """The log streams of the engine's functions (their worker processes), as CloudWatch Logs would get them."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, function_name: str, text: str) -> None:
        with self.lock:
            self.texts.append(text)

    def getvalue(self) -> str:
        with self.lock:
            return "\n".join(self.texts)


def emf_records(output: str) -> list[dict[str, Any]]:
    """The EMF records (Powertools metrics) among log lines."""
    blobs = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def metric_counts(blobs: list[dict[str, Any]], saga_id: str) -> Counter[tuple[str, ...]]:
    """(metric, dimension values...) -> number of EMF records of one saga."""
    counts: Counter[tuple[str, ...]] = Counter()
    for blob in blobs:
        if blob.get("saga_id") != saga_id:
            continue
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        for metric in directive["Metrics"]:
            dimensions = tuple(str(blob[name]) for name in directive["Dimensions"][0] if name != "service")
            counts[(metric["Name"], *dimensions)] += 1
    return counts


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


def stuck_saga(request: SagaRequest) -> str:
    """A saga recorded RUNNING whose execution Step Functions could not start (the API answered 503)."""

    def unavailable(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        raise step_functions.StepFunctionsUnavailable("Step Functions did not answer")

    try:
        sagas.start_saga(request, unavailable)
    except sagas.SagaNotStarted as refused:
        return refused.saga.id
    raise AssertionError("the start did not fail")


def moved_saga(request: SagaRequest, *statuses: str) -> str:
    """A stuck saga (`stuck_saga`) moved through `statuses` in the database alone, as if its steps had moved it; a
    FAILED one so has nothing to undo, and a retry's compensations find nothing and end it COMPENSATED."""
    saga_id = stuck_saga(request)
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
        for status in statuses:
            assert saga_log.set_status(uow.session, saga, SagaStatus(status), failed_step="release_stock")
        uow.commit()
    return saga_id


def end_first_execution(engine: LocalEngine, saga_id: str) -> None:
    """Give the stuck saga a first execution that ends while its row still says it is under way, as after a long
    database outage: this one is handed another saga's id, so none of its steps touches this saga."""
    with database.UnitOfWork() as uow:
        saga = uow.session.get_one(Saga, saga_id)
    arn = step_functions.start_execution(saga.type, saga_id, {**saga.execution_input(), "saga_id": "0" * 32})
    engine.wait(arn)


def saga_executions(saga_id: str) -> list[str]:
    """The names of the saga's executions, the first first (the saga id, then `<saga id>-2`, ...)."""
    with database.UnitOfWork() as uow:
        saga_type = uow.session.get_one(Saga, saga_id).type
    client = step_functions.sfn_client()
    machine = step_functions.state_machine_arn(saga_type)
    names = [
        execution["name"]
        for page in client.get_paginator("list_executions").paginate(stateMachineArn=machine)
        for execution in page["executions"]
        if execution["name"] == saga_id or execution["name"].startswith(f"{saga_id}-")
    ]
    return sorted(names, key=lambda name: (len(name), name))


@dataclass(frozen=True)
class SagaRow:
    """A saga as the search sees it, written straight to the database: no execution is needed to list it."""

    saga_id: str
    type: str
    status: str
    customer_id: str
    created_at: datetime
    order_id: str | None = None
    sku: str | None = None
    step: str | None = None


def write_sagas(rows: list[SagaRow]) -> None:
    with database.UnitOfWork() as uow:
        for row in rows:
            uow.session.add(
                Saga(
                    id=row.saga_id,
                    type=row.type,
                    status=row.status,
                    input={"customer_id": row.customer_id},
                    result={},
                    customer_id=row.customer_id,
                    order_id=row.order_id,
                    sku=row.sku,
                    failed_step=row.step,
                    created_at=row.created_at,
                    updated_at=row.created_at,
                )
            )
        uow.commit()


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


class FunctionError(Exception):
    """A function's invocation answered an error (Invoke's FunctionError): its errorType and errorMessage."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message = error_type, message


def invoke(engine: LocalEngine, step: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke a step's function on the engine's worker processes, as Lambda's Invoke API does."""
    payload, errored, _ = engine.functions.invoke(f"{state_of_step(step)}Function", event)  # type: ignore[union-attr]
    answer = json.loads(payload)
    if errored:
        raise FunctionError(answer["errorType"], answer["errorMessage"])
    return dict(answer)


def lambda_context(remaining_ms: int = 30_000) -> SimpleNamespace:
    """What the idempotency utility and the reconciler read of a Lambda context: the time left."""
    return SimpleNamespace(get_remaining_time_in_millis=lambda: remaining_ms)


def purchase(sku: str = "SKU-MOUSE", quantity: int = 2, token: str = "tok_visa", **faults: str) -> PurchaseRequest:
    return PurchaseRequest(customer_id="c-1", sku=sku, quantity=quantity, payment_token=token, faults=faults)


def give_back(order_id: str, quantity: int = 1, customer_id: str = "c-1", **faults: str) -> ReturnRequest:
    """A return of `order_id` by `customer_id`, by default the customer of `purchase()`."""
    return ReturnRequest(
        customer_id=customer_id, order_id=order_id, quantity=quantity, reason="does not fit", faults=faults
    )


def product(sku: str) -> Product:
    with database.UnitOfWork() as uow:
        return uow.session.get_one(Product, sku)


def set_stock(sku: str, units: int, buckets: int | None = None) -> None:
    """Give `sku` `units` on hand, none reserved, as its initial stock, split into `buckets` (else as many as now)."""
    with database.UnitOfWork() as uow:
        row = uow.session.get_one(Product, sku)
        count = buckets or row.buckets
        uow.session.execute(delete(StockBucket).where(StockBucket.sku == sku))
        uow.session.add_all(stock.new_buckets(sku, units, count))
        row.initial_on_hand, row.buckets = units, count
        uow.commit()


def stock_buckets(sku: str) -> list[tuple[int, int, int]]:
    """(bucket, on_hand, reserved) of each of `sku`'s stock buckets."""
    with database.UnitOfWork() as uow:
        rows = uow.session.scalars(select(StockBucket).where(StockBucket.sku == sku).order_by(StockBucket.bucket))
        return [(row.bucket, row.on_hand, row.reserved) for row in rows]


def provider_charges(saga_id: str) -> list[Charge]:
    """What the payment provider holds for the saga, as its own ledger says: from the unfiltered listing, which is
    consistent, not from the search by saga, which lags its writes (PROVIDER_LISTING_LAG_SECONDS)."""
    return [charge for charge in payment_provider.provider_client().list_charges() if charge.saga_id == saga_id]


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


def assert_consistent(provider: PaymentProviderClient | None = None) -> None:
    """Every invariant holds, the payment provider's ledger (the engine's, unless another is named) included."""
    with database.UnitOfWork() as uow:
        broken = invariants.violations(uow.session, provider or payment_provider.provider_client())
    assert broken == []


def audit_rows(saga_id: str, step: str) -> list[tuple[int, str, str | None]]:
    """The step's attempts in the audit log: (attempt, status, error type), in attempt order."""
    with database.UnitOfWork() as uow:
        rows = uow.session.execute(
            select(AuditEvent.attempt, AuditEvent.status, AuditEvent.error_type)
            .where(AuditEvent.saga_id == saga_id, AuditEvent.step == step)
            .order_by(AuditEvent.attempt, AuditEvent.id)
        )
        return [(attempt, status, error_type) for attempt, status, error_type in rows]


def task_errors(saga_id: str, state: str) -> list[str]:
    """The error of each failed attempt of a Task state, as Step Functions recorded it."""
    with database.UnitOfWork() as uow:
        arn = str(uow.session.get_one(Saga, saga_id).execution_arn)
    history = step_functions.execution_history(arn)
    errors, current = [], None
    for event in history:
        if event["type"].endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
        elif current == state and event["type"] in ("TaskFailed", "TaskTimedOut"):
            details = event.get("taskFailedEventDetails") or event.get("taskTimedOutEventDetails") or {}
            errors.append(details.get("error", ""))
    return errors


def assert_every_attempt_audited(run: SagaRun) -> None:
    """Each Task attempt in the execution history has its row in the audit log, and no more."""
    from_history = {
        step_of_state(state): attempts for state, attempts in run.path if attempts and state != RECORDS_FAILURE
    }
    assert audited_attempts(run.saga_id) == from_history


RECORDS_FAILURE = "CompensationFailed"
"""The Task on a compensation's way to the Fail state: it records the outcome, it is no step of the saga."""
FINAL_STATUSES = frozenset({"COMPLETED", "COMPENSATED", "CANCELLED", "REJECTED", "FAILED", "RESOLVED"})


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


IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, error: Exception) -> None:
    """A server a tier needs does not answer: the tier is skipped, or under CI=true the run fails."""
    message = f"{what} unreachable: {error}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the {what} tier must run)", pytrace=False)
    pytest.skip(message)


@contextmanager
def throwaway_database(admin_url: str, prefix: str, *dropped_after: str) -> Iterator[str]:
    """A new database on the PostgreSQL or MySQL server of `admin_url`, dropped afterwards with the databases
    named after it with the `dropped_after` suffixes (the provider's, on MySQL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    mysql = admin_url.startswith("mysql")
    quote, force = ("`", "") if mysql else ('"', " WITH (FORCE)")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    except Exception as error:
        admin.dispose()
        unavailable("MySQL" if mysql else "PostgreSQL", error)
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            for dropped in (name, *(name + suffix for suffix in dropped_after)):
                connection.execute(text(f"DROP DATABASE IF EXISTS {quote}{dropped}{quote}{force}"))
        admin.dispose()


class FakeClock:
    """A clock that moves only when what runs on it waits (a reconciler pass, the bulk retries' worker)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def slow_step_functions(delay: float = 0.05) -> StepFunctions:
    """The real Step Functions, each StartExecution slowed down, so that racing retries overlap."""
    real = boto3_step_functions()

    def slow_start(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        threading.Event().wait(delay)
        return real.start(saga_type, name, execution_input)

    return StepFunctions(start=slow_start, status=real.status, arn_for=real.arn_for)


def step_functions_answering_once_ended(engine: LocalEngine) -> StepFunctions:
    """The real Step Functions, whose DescribeExecution answers only once the execution has ended: a look at a
    saga's execution that comes just after that execution ended it."""
    real = boto3_step_functions()

    def status_once_it_ended(arn: str) -> str | None:
        engine.wait(arn)
        return real.status(arn)

    return StepFunctions(start=real.start, status=status_once_it_ended, arn_for=real.arn_for)


@contextmanager
def losing_deadlocks(matches: Callable[[str, Any], bool], times: int) -> Iterator[list[str]]:
    """MariaDB's deadlock (1213) for the first `times` statements of this process's database engine that `matches`
    (statement, parameters) picks, as the server answers its victim; yields every statement it picked."""
    picked: list[str] = []

    def deadlock(connection: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if matches(statement, parameters):
            picked.append(statement)
            if len(picked) <= times:
                raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting")

    sql_event.listen(database.get_engine(), "before_cursor_execute", deadlock)
    try:
        yield picked
    finally:
        sql_event.remove(database.get_engine(), "before_cursor_execute", deadlock)


def single_retry(saga_id: str, sfn: StepFunctions, barrier: threading.Barrier) -> str:
    """`POST /sagas/{saga_id}/retry`'s service, once every racer is ready: `retried` or `refused`."""
    barrier.wait()
    try:
        recovery.retry(saga_id, sfn)
    except recovery.NotRetryable:
        return "refused"
    return "retried"
