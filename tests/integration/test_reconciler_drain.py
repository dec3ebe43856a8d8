"""The reconciler drains a backlog (docs/design.md §7.2): one invocation pages through every stuck saga until none
is left or its time is up, looks at each once, and keeps its Step Functions calls within the rates it is given.

The pacing is checked on a clock of the test's own, which the pass's waits advance: no assertion reads the time.

The thousand-saga backlog runs on PostgreSQL only. The local engine runs sagas about ten a second at best
(docs/performance.md) and far fewer on a shared, loaded 2-core machine: a thousand take a quarter of an hour or
more, and a run of 250 on the embedded default under a load average near 60 saw most of its sagas run out of
step retries, which says nothing about the reconciler. What the backends differ in (each page's lease with SKIP
LOCKED, the (updated_at, id) order across pages) the other tests here exercise on all three, every pass spanning
several pages.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import func, select

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.service import reconciler, sagas
from chalicelib.service.executions import CONFLICT_ATTEMPTS, UNFINISHED, StepFunctions, boto3_step_functions
from chalicelib.settings import get_settings
from functions import reconcile
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    FakeClock,
    assert_consistent,
    end_first_execution,
    finish,
    lambda_context,
    losing_deadlocks,
    purchase,
    saga_executions,
)

BACKLOG = 1000
BACKLOG_SKU = "SKU-NOT-SOLD-HERE"
"""The backlog's purchases name a product the shop does not have: each resumed execution runs one step and ends
REJECTED. What is under test is the pass that resumes them; their own work would only load the machine, whose
worker processes (each with database connections of its own) a thousand three-step sagas outgrew."""
LOCAL_START_RATE, LOCAL_DESCRIBE_RATE = 20.0, 50.0
"""The backlog's rates: moto has no quota of its own; the defaults (design §7.2) are paced in the test below."""
INVOCATION_MS = 900_000
"""Lambda's longest timeout, which a deployed reconciler never exceeds."""
WAIT_SECONDS = 1800.0
"""How long the backlog's executions may take to end on a loaded machine."""
FOREVER = 3600.0


def _stuck_sagas(count: int, sku: str = "SKU-MOUSE") -> list[str]:
    """Purchases recorded RUNNING whose executions never started, written in one transaction (one at a time
    through the start path would take minutes for a thousand)."""
    caller = sagas.caller_digest(sagas.LOCAL_CALLER)
    with database.UnitOfWork() as uow:
        ids = [saga_log.create_saga(uow.session, purchase(sku=sku, quantity=1), caller=caller).id for _ in range(count)]
        uow.commit()
    return ids


def _wait_until_final(saga_ids: list[str]) -> None:
    """Until every one of the sagas is final (which final is the saga's own business: the machine may be loaded
    enough for a step to run out of retries)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        with database.UnitOfWork() as uow:
            unfinished = uow.session.scalar(
                select(func.count()).select_from(Saga).where(Saga.id.in_(saga_ids), Saga.status.in_(UNFINISHED))
            )
        if not unfinished:
            return
        assert time.monotonic() < deadline, f"{unfinished} saga(s) still unfinished after {WAIT_SECONDS:.0f} s"
        time.sleep(1)


def _executions(saga_ids: list[str]) -> Counter[str]:
    """How many executions of each name these purchases have had (the engine keeps earlier tests' executions)."""
    client = step_functions.sfn_client()
    pages = client.get_paginator("list_executions").paginate(
        stateMachineArn=step_functions.state_machine_arn("purchase")
    )
    names = (execution["name"] for page in pages for execution in page["executions"])
    ours = set(saga_ids)
    return Counter(name for name in names if name.split("-")[0] in ours)


def _leased() -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Saga).where(Saga.lease_until.is_not(None))) or 0)


def _recording(calls: list[tuple[str, float]], clock: FakeClock) -> StepFunctions:
    """The real Step Functions, noting each StartExecution and DescribeExecution with the clock's time."""
    real = boto3_step_functions()

    def start(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        calls.append(("start", clock.now))
        return real.start(saga_type, name, execution_input)

    def status(execution_arn: str) -> str | None:
        calls.append(("describe", clock.now))
        return real.status(execution_arn)

    return StepFunctions(start=start, status=status, arn_for=real.arn_for)


@pytest.mark.parametrize("backend_name", ["postgres"])
@pytest.mark.alone  # 1,000 sagas, and the executions it starts
def test_one_reconciler_invocation_resumes_a_backlog_of_stuck_sagas(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = _stuck_sagas(BACKLOG, sku=BACKLOG_SKU)
    monkeypatch.setattr(get_settings(), "reconciler_grace_seconds", 0.0)
    monkeypatch.setattr(get_settings(), "reconciler_start_rate", LOCAL_START_RATE)
    monkeypatch.setattr(get_settings(), "reconciler_describe_rate", LOCAL_DESCRIBE_RATE)

    answer = reconcile.lambda_handler({}, lambda_context(INVOCATION_MS))

    assert answer == {"found": len(stuck), "resumed": len(stuck)}
    _wait_until_final(stuck)
    assert _executions(stuck) == Counter(stuck)  # one execution each, under the saga's own name
    assert _leased() == 0
    assert_consistent()


def test_a_pass_starts_and_describes_executions_no_faster_than_its_rates(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = _stuck_sagas(12)
    monkeypatch.setattr(get_settings(), "reconciler_start_rate", 2.0)
    monkeypatch.setattr(get_settings(), "reconciler_describe_rate", 4.0)
    clock, calls = FakeClock(), list[tuple[str, float]]()

    done = reconciler.reconcile(_recording(calls, clock), 0, FOREVER, clock=clock, page_size=5)

    assert sorted(done.resumed) == sorted(stuck)
    for api, rate in (("start", 2.0), ("describe", 4.0)):
        times = sorted(at for name, at in calls if name == api)  # noted once granted, by concurrent workers
        assert len(times) == len(stuck)
        # A bucket of one second's worth of tokens, refilled at `rate`: the n-th call comes (n - rate) / rate in.
        for number, at in enumerate(times, start=1):
            assert at >= (number - rate) / rate - 1e-9, (api, number, at)
    _wait_until_final(stuck)


def test_a_pass_whose_time_is_up_stops_cleanly_and_the_next_pass_goes_on(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = _stuck_sagas(10)
    monkeypatch.setattr(get_settings(), "reconciler_start_rate", 1.0)
    clock = FakeClock()

    passes = [reconciler.reconcile(boto3_step_functions(), 0, 3.0, clock=clock, page_size=3)]
    assert _leased() == 0  # what the pass had leased and not done, it gave back
    while not passes[-1].drained:
        passes.append(reconciler.reconcile(boto3_step_functions(), 0, 3.0, clock=clock, page_size=3))
        assert _leased() == 0

    resumed = [saga_id for done in passes for saga_id in done.resumed]
    assert 0 < len(passes[0].resumed) < len(stuck)
    assert sorted(resumed) == sorted(stuck)
    _wait_until_final(stuck)
    assert _executions(stuck) == Counter(stuck)
    assert_consistent()


def test_sagas_with_a_live_execution_are_looked_at_once_per_pass_and_not_counted(
    backend: Backend, engine: LocalEngine
) -> None:
    live, stuck = _stuck_sagas(5), _stuck_sagas(3)
    real = boto3_step_functions()
    asked: Counter[str] = Counter()

    def status(execution_arn: str) -> str | None:
        saga_id = execution_arn.rsplit(":", 1)[-1]
        asked[saga_id] += 1
        return "RUNNING" if saga_id in live else real.status(execution_arn)

    done = reconciler.reconcile(StepFunctions(real.start, status, real.arn_for), 0, page_size=2)

    assert sorted(done.found) == sorted(done.resumed) == sorted(stuck)
    assert done.drained
    assert all(asked[saga_id] == 1 for saga_id in live), asked
    assert _leased() == 0
    _wait_until_final(stuck)


@pytest.mark.backends("mysql")
@pytest.mark.parametrize("deadlocks", [1, 99], ids=["once", "every time"])
def test_a_lease_whose_release_loses_a_deadlock_does_not_stop_the_pass(
    backend: Backend, engine: LocalEngine, deadlocks: int
) -> None:
    """Seen on MariaDB in CI: a pass gave back the lease of a saga whose execution ran, the execution's step wrote
    the same row, and the release was the deadlock's victim (1213); the error ended the whole pass with its other
    leases held. A lost release is run again; one that keeps losing is left to the page's release."""
    live, stuck = _stuck_sagas(2), _stuck_sagas(2)
    real = boto3_step_functions()

    def status(execution_arn: str) -> str | None:
        return "RUNNING" if execution_arn.rsplit(":", 1)[-1] in live else real.status(execution_arn)

    def release_of_the_live_saga(statement: str, parameters: Any) -> bool:
        release = statement.startswith("UPDATE sagas SET updated_at=sagas.updated_at, lease_until=")
        return release and parameters.get("id_1") == live[0] and parameters["lease_until"] is None

    with losing_deadlocks(release_of_the_live_saga, deadlocks) as releases:
        done = reconciler.reconcile(StepFunctions(real.start, status, real.arn_for), 0, page_size=2)

    assert len(releases) == min(deadlocks + 1, CONFLICT_ATTEMPTS)
    assert sorted(done.resumed) == sorted(stuck)
    assert done.drained
    assert _leased() == 0
    _wait_until_final(stuck)


def test_a_throttled_describe_execution_starts_nothing_and_the_next_pass_resumes_the_saga_once(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = _stuck_sagas(1)[0]
    end_first_execution(engine, saga_id)
    real = boto3_step_functions()
    starts: list[str] = []

    def throttled(execution_arn: str) -> dict[str, Any]:
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        raise ClientError(error, "DescribeExecution")

    def start(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        starts.append(name)
        return real.start(saga_type, name, execution_input)

    with monkeypatch.context() as patched:
        patched.setattr(step_functions, "describe_execution", throttled)
        first = reconciler.reconcile(StepFunctions(start, real.status, real.arn_for), 0)
    second = reconciler.reconcile(StepFunctions(start, real.status, real.arn_for), 0)

    assert (first.found, first.resumed, _leased()) == ([], [], 0)
    assert (second.found, second.resumed) == ([saga_id], [saga_id])
    assert starts == [f"{saga_id}-2"]
    assert finish(engine, saga_id).status == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
