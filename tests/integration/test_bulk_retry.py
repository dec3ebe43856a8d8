"""A bulk retry (docs/design.md §3.1): `POST /sagas/retry` with a search's filter retries what a single retry would
take of what the listing shows; a dry run counts exactly what the real run retries; a worker works through the
operation within its StartExecution rate, counting each saga once; and a saga's lease keeps a single retry and the
worker, or two workers, from starting two executions for it.

The sagas are recorded straight into the database (a stuck saga through the start path with Step Functions
unavailable, a FAILED one moved there from it), so that each test runs only the executions the retries start. A
FAILED saga recorded so has nothing to undo: its retry runs the compensations, which find nothing, and it ends
COMPENSATED. The pacing is checked on a clock of the test's own, which the worker's waits advance.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import func, select, update

from app import app
from chalicelib.adapters import database
from chalicelib.adapters.tables import Operation, OperationSaga, Saga, utcnow
from chalicelib.domain.contracts import PurchaseRequest, SagaStatus
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.observability.metric_names import OPERATOR_ACTIONS
from chalicelib.service import bulk_retry, operator_actions, recovery
from chalicelib.service.executions import LEASE_SECONDS, StepFunctions, boto3_step_functions
from chalicelib.settings import get_settings
from functions import bulk_retry as bulk_retry_function
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    FakeClock,
    assert_consistent,
    emf_records,
    finish,
    lambda_context,
    metric_counts,
    moved_saga,
    saga_executions,
    single_retry,
    slow_step_functions,
    status_history,
    stuck_saga,
)


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stuck saga counts as stuck at once (the reconciler's grace period is 120 s)."""
    monkeypatch.setattr(get_settings(), "reconciler_grace_seconds", 0.0)


def _request(customer_id: str) -> PurchaseRequest:
    return PurchaseRequest(customer_id=customer_id, sku="SKU-MOUSE", quantity=1, payment_token="tok_visa")


def _stuck(customer_id: str) -> str:
    return stuck_saga(_request(customer_id))


def _moved(customer_id: str, *statuses: SagaStatus) -> str:
    return moved_saga(_request(customer_id), *statuses)


def _failed(customer_id: str) -> str:
    return _moved(customer_id, SagaStatus.COMPENSATING, SagaStatus.FAILED)


def _operation(operation_id: str) -> dict[str, Any]:
    found = bulk_retry.read(operation_id)
    assert found is not None
    return {key: found[key] for key in ("status", "matched", "started", "done", "failed")}


def _statuses(saga_ids: list[str]) -> dict[str, str]:
    with database.UnitOfWork() as uow:
        return dict(uow.session.execute(select(Saga.id, Saga.status).where(Saga.id.in_(saga_ids))).all())


def _operations() -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Operation)) or 0)


def _recording(started: list[tuple[str, float]], clock: FakeClock) -> StepFunctions:
    """Step Functions that notes each StartExecution with the clock's time and runs nothing; no execution exists."""
    real = boto3_step_functions()

    def start(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        started.append((name, clock.now))
        return real.arn_for(saga_type, name)

    return StepFunctions(start=start, status=lambda arn: None, arn_for=real.arn_for)


def test_a_dry_run_counts_what_the_listing_shows_that_the_real_run_then_retries(
    backend: Backend, engine: LocalEngine
) -> None:
    failed = [_failed("alice") for _ in range(3)]
    stuck = _stuck("alice")
    rejected = _moved("alice", SagaStatus.REJECTED)
    others = [_failed("bob"), _stuck("bob")]
    everything = [*failed, stuck, rejected, *others]
    before = _statuses(everything)
    body = {"filter": {"customer_id": "alice", "status": ["FAILED", "RUNNING", "REJECTED"]}}

    with Client(app) as client:
        listed = client.http.get("/sagas?customer_id=alice&status=FAILED,RUNNING,REJECTED").json_body["items"]
        dry = _post(client, {**body, "dry_run": True})
        unchanged = _statuses(everything)
        accepted = _post(client, body)
        operation_id = accepted.json_body["operation_id"]
        pending = client.http.get(f"/operations/{operation_id}").json_body
        taken = bulk_retry.work(boto3_step_functions())
        after = client.http.get(f"/operations/{operation_id}").json_body

    retried = {*failed, stuck}
    assert {item["saga_id"] for item in listed} == {*retried, rejected}  # the listing shows the REJECTED one too
    assert dry.status_code == 200
    assert (dry.json_body["matched"], set(dry.json_body["saga_ids"])) == (len(retried), retried)
    assert unchanged == before and _operations() == 1
    assert (accepted.status_code, accepted.json_body["matched"]) == (202, dry.json_body["matched"])
    assert accepted.json_body["links"] == {"self": f"/operations/{operation_id}"}
    assert (pending["status"], pending["started"], pending["filter"]) == ("PENDING", 0, body["filter"])
    assert taken == len(retried)
    assert {key: after[key] for key in ("status", "matched", "started", "done", "failed")} == {
        "status": "DONE",
        "matched": 4,
        "started": 4,
        "done": 4,
        "failed": 0,
    }
    for saga_id in failed:
        assert finish(engine, saga_id).status == "COMPENSATED"
        assert saga_executions(saga_id) == [f"{saga_id}-2"]
    assert finish(engine, stuck).status == "COMPLETED"
    assert saga_executions(stuck) == [stuck]  # its first execution had never started: it is that one
    assert _statuses([rejected, *others]) == {key: before[key] for key in (rejected, *others)}
    assert_consistent()


def _post(client: Client, body: dict[str, Any]) -> Any:
    return client.http.post("/sagas/retry", body=json.dumps(body), headers={"Content-Type": "application/json"})


def test_a_saga_that_changed_after_the_request_is_counted_failed_and_the_operation_ends(
    backend: Backend, engine: LocalEngine
) -> None:
    sagas = [_failed("carol") for _ in range(3)]
    operation = bulk_retry.submit(SagaFilter.model_validate({"customer_id": "carol"}), "operator")
    operator_actions.resolve(sagas[0], "refunded by hand", "operator")

    bulk_retry.work(boto3_step_functions())

    assert _operation(operation.id) == {"status": "DONE", "matched": 3, "started": 3, "done": 2, "failed": 1}
    assert status_history(sagas[0])[-1] == "RESOLVED"
    assert [finish(engine, saga_id).status for saga_id in sagas[1:]] == ["COMPENSATED", "COMPENSATED"]
    assert_consistent()


def test_a_bulk_retry_of_nothing_is_done_at_once_and_an_unknown_operation_is_404(
    backend: Backend, engine: LocalEngine
) -> None:
    with Client(app) as client:
        accepted = _post(client, {"filter": {"customer_id": "nobody"}})
        done = client.http.get(f"/operations/{accepted.json_body['operation_id']}").json_body
        unknown = client.http.get(f"/operations/{'0' * 32}")
        malformed = client.http.get("/operations/not-an-id")

    assert (accepted.status_code, accepted.json_body["matched"]) == (202, 0)
    assert (done["status"], done["matched"], done["started"]) == ("DONE", 0, 0)
    assert (unknown.status_code, unknown.json_body["error"]) == (404, "NotFound")
    assert malformed.status_code == 404


@pytest.mark.backends("embedded")  # refused while the body is parsed, before any query: the database plays no part
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"status": "DONE"}}, "filter.status"),
        ({"filter": {"colour": "red"}}, "filter.colour"),
        ({"filter": {"created_after": "yesterday"}}, "filter.created_after"),
        ({"filter": {"type": "refund"}}, "filter.type"),
        ({"filter": "FAILED"}, "filter"),
        ({"dry_run": "maybe"}, "dry_run"),
        ({"filters": {}}, "filters"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_key_and_records_nothing(
    backend: Backend, body: dict[str, Any], field: str
) -> None:
    with Client(app) as client:
        answers = [_post(client, {"dry_run": True, **body})]
        if "dry_run" not in body:
            answers.append(_post(client, body))

    for answer in answers:
        assert answer.status_code == 400, answer.json_body
        assert [detail["field"] for detail in answer.json_body["details"]] == [field], answer.json_body
    assert _operations() == 0


def test_the_worker_starts_executions_no_faster_than_its_rate_and_goes_on_where_its_time_ran_out(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sagas = [_failed("dave") for _ in range(10)]
    operation = bulk_retry.submit(SagaFilter.model_validate({"customer_id": "dave"}), "operator")
    rate = 2.0
    monkeypatch.setattr(get_settings(), "bulk_retry_start_rate", rate)
    clock, started = FakeClock(), list[tuple[str, float]]()

    first = bulk_retry.work(_recording(started, clock), budget_seconds=2.0, clock=clock)
    between = _operation(operation.id)
    rest = bulk_retry.work(_recording(started, clock), budget_seconds=60.0, clock=clock)

    # A bucket of one second's worth of tokens, refilled at `rate`: the n-th start comes (n - rate) / rate in at the
    # earliest; the second worker's bucket starts full, as a new invocation's does.
    times = [at for _, at in started]
    for number, at in enumerate(times[:first], start=1):
        assert at >= (number - rate) / rate - 1e-9, (number, at)
    for number, at in enumerate(times[first:], start=1):
        assert at - times[first] >= (number - rate) / rate - 1e-9, (number, at)
    assert 0 < first < len(sagas) and first + rest == len(sagas)
    assert between == {"status": "RUNNING", "matched": 10, "started": first, "done": first, "failed": 0}
    assert _operation(operation.id) == {"status": "DONE", "matched": 10, "started": 10, "done": 10, "failed": 0}
    assert sorted(name for name, _ in started) == sorted(f"{saga_id}-2" for saga_id in sagas)


def test_a_single_retry_racing_the_worker_starts_one_execution(backend: Backend, engine: LocalEngine) -> None:
    """Each round races a single retry against the worker over the same FAILED saga; whoever wins, the saga gets
    exactly one new execution, and the operation counts the worker's outcome (the start is slowed down so that the
    two overlap)."""
    slow = slow_step_functions()
    barrier = threading.Barrier(2)

    def work() -> int:
        barrier.wait()
        return bulk_retry.work(slow)

    outcomes = []
    for round_number in range(3):
        customer = f"erin-{round_number}"
        saga_id = _failed(customer)
        operation = bulk_retry.submit(SagaFilter.model_validate({"customer_id": customer}), "operator")
        with ThreadPoolExecutor(2) as pool:
            single, worker = pool.submit(single_retry, saga_id, slow, barrier), pool.submit(work)
            assert worker.result() == 1
            counted = _operation(operation.id)
            outcomes.append((single.result(), counted["done"], counted["failed"]))
        assert saga_executions(saga_id) == [f"{saga_id}-2"]
        assert finish(engine, saga_id).status == "COMPENSATED"

    assert all(outcome in (("retried", 0, 1), ("refused", 1, 0)) for outcome in outcomes), outcomes
    assert_consistent()


def test_workers_invoked_twice_on_one_operation_retry_each_saga_once(backend: Backend, engine: LocalEngine) -> None:
    sagas = [_failed("frank") for _ in range(4)]
    operation = bulk_retry.submit(SagaFilter.model_validate({"customer_id": "frank"}), "operator")
    barrier = threading.Barrier(2)

    def invoke(_: int) -> int:
        barrier.wait()
        return int(bulk_retry_function.lambda_handler({}, lambda_context(120_000))["taken"])

    with ThreadPoolExecutor(2) as pool:
        taken = list(pool.map(invoke, range(2)))
    again = bulk_retry_function.lambda_handler({}, lambda_context(120_000))

    assert sum(taken) == len(sagas) and again == {"taken": 0}
    assert _operation(operation.id) == {"status": "DONE", "matched": 4, "started": 4, "done": 4, "failed": 0}
    for saga_id in sagas:
        assert saga_executions(saga_id) == [f"{saga_id}-2"]
        assert finish(engine, saga_id).status == "COMPENSATED"
    assert_consistent()


def test_a_saga_a_worker_died_with_is_taken_over_once_its_lease_lapsed_and_started_once(
    backend: Backend, engine: LocalEngine
) -> None:
    """Two workers die with a saga taken up: one before its retry, one after it started the next execution. Once a
    saga's lease would have lapsed, the next worker retries the first and counts the second done without a second
    start."""
    before, after = _failed("grace"), _failed("grace")
    operation = bulk_retry.submit(SagaFilter.model_validate({"customer_id": "grace"}), "operator")
    for _ in range(2):
        taken = bulk_retry._claim(operation.id)
        assert taken is not None
        if taken.saga_id == after:
            recovery.retry(after, boto3_step_functions())
    assert bulk_retry.work(boto3_step_functions()) == 0  # too early: they may still be at work
    with database.UnitOfWork() as uow:
        uow.session.execute(update(OperationSaga).values(taken_at=utcnow() - timedelta(seconds=LEASE_SECONDS + 1)))
        uow.commit()

    assert bulk_retry.work(boto3_step_functions()) == 2

    assert _operation(operation.id) == {"status": "DONE", "matched": 2, "started": 2, "done": 2, "failed": 0}
    for saga_id in (before, after):
        assert saga_executions(saga_id) == [f"{saga_id}-2"]
        assert finish(engine, saga_id).status == "COMPENSATED"
    assert_consistent()


def test_each_saga_a_bulk_retry_starts_again_is_counted_as_an_operator_action(
    backend: Backend, engine: LocalEngine, metrics_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    retried, refused = _failed("dave"), _failed("dave")
    bulk_retry.submit(SagaFilter.model_validate({"customer_id": "dave"}), "operator")
    operator_actions.resolve(refused, "refunded by hand", "operator")  # counted failed by the worker, not an action
    capsys.readouterr()

    bulk_retry.work(boto3_step_functions())
    records = emf_records(capsys.readouterr().out)

    assert metric_counts(records, retried)[(OPERATOR_ACTIONS, "purchase", bulk_retry.BULK_RETRY)] == 1
    assert not [key for key in metric_counts(records, refused) if key[0] == OPERATOR_ACTIONS]
    finish(engine, retried)
