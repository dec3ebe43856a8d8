"""The reconciler (docs/design.md §7.2): sagas RUNNING or COMPENSATING with no live execution, quiet for the
grace period, get their next execution, once, however many passes run at once; the others are left alone."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Payment, Reservation, Saga
from chalicelib.observability import metric_names
from chalicelib.service import reconciler, sagas
from chalicelib.service.executions import StepFunctions, boto3_step_functions
from chalicelib.settings import get_settings
from functions import confirm_sale, process_payment, reconcile, refund_payment, reserve_stock
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    assert_consistent,
    end_first_execution,
    finish,
    lambda_context,
    purchase,
    saga_executions,
    status_history,
    step_functions_answering_once_ended,
    stuck_saga,
)

PASSES = 3


def _count(model: type[Any], saga_id: str) -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(model.saga_id == saga_id)) or 0)


def _status(saga_id: str) -> str:
    with database.UnitOfWork() as uow:
        return uow.session.get_one(Saga, saga_id).status


def _deliver(saga_id: str, *handlers: Callable[[Any, Any], Any]) -> None:
    """What the first execution did before it was cut: these steps ran (a failure is the step's own business)."""
    for handler in handlers:
        with contextlib.suppress(Exception):
            handler({"saga_id": saga_id}, lambda_context())


def test_a_saga_whose_execution_never_started_is_started_once_its_grace_period_has_passed(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = stuck_saga(purchase())

    early = reconciler.reconcile(boto3_step_functions(), grace_seconds=3600)
    due = reconciler.reconcile(boto3_step_functions(), grace_seconds=0)

    assert (early.found, early.resumed) == ([], [])
    assert (due.found, due.resumed) == ([saga_id], [saga_id])
    assert finish(engine, saga_id).status == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id]
    assert_consistent()


def test_a_running_saga_whose_execution_ended_runs_again_under_the_next_name_and_takes_effect_once(
    backend: Backend, engine: LocalEngine
) -> None:
    saga_id = stuck_saga(purchase())
    _deliver(saga_id, reserve_stock.lambda_handler, process_payment.lambda_handler)
    end_first_execution(engine, saga_id)
    assert _status(saga_id) == "RUNNING"

    assert reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed == [saga_id]

    run = finish(engine, saga_id)
    assert run.status == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id, f"{saga_id}-2"]
    assert _count(Reservation, saga_id) == _count(Payment, saga_id) == 1
    assert_consistent()


def test_a_compensating_saga_whose_execution_ended_ends_compensated(backend: Backend, engine: LocalEngine) -> None:
    saga_id = stuck_saga(purchase(confirm_sale="fail"))
    handlers = (reserve_stock, process_payment, confirm_sale, refund_payment)
    _deliver(saga_id, *(handler.lambda_handler for handler in handlers))
    end_first_execution(engine, saga_id)
    assert _status(saga_id) == "COMPENSATING"

    assert reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed == [saga_id]

    run = finish(engine, saga_id)
    assert run.status == "COMPENSATED"
    assert run.states[-3:] == ["RefundPayment", "ReleaseStock", "Compensated"]
    assert status_history(saga_id) == ["RUNNING", "COMPENSATING", "COMPENSATED"]
    assert_consistent()


def test_sagas_with_a_live_execution_and_failed_sagas_are_left_alone(backend: Backend, engine: LocalEngine) -> None:
    failed = finish(
        engine,
        sagas.start_saga(purchase(confirm_sale="fail", refund_payment="fail"), step_functions.start_execution).id,
    )
    live = stuck_saga(purchase())
    running = StepFunctions(start=pytest.fail, status=lambda arn: "RUNNING", arn_for=step_functions.execution_arn_for)

    done = reconciler.reconcile(running, grace_seconds=0)

    assert (done.found, done.resumed) == ([], [])
    assert (failed.status, _status(failed.saga_id), _status(live)) == ("FAILED", "FAILED", "RUNNING")
    assert reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed == [live]  # its lease was given back
    assert finish(engine, live).status == "COMPLETED"


def test_a_saga_whose_execution_ends_it_while_the_pass_looks_is_not_resumed(
    backend: Backend, short_timeouts: LocalEngine
) -> None:
    """The pass leases a saga whose first step is held (to the function's timeout), and its DescribeExecution
    answers only once the execution has ended: the saga is final by then, so nothing starts, and its lease is
    given back."""
    engine = short_timeouts
    saga_id = sagas.start_saga(purchase(reserve_stock="timeout:1"), step_functions.start_execution).id

    done = reconciler.reconcile(step_functions_answering_once_ended(engine), grace_seconds=0)

    assert (done.found, done.resumed) == ([], [])
    assert finish(engine, saga_id).status == "COMPLETED"
    assert saga_executions(saga_id) == [saga_id]
    with database.UnitOfWork() as uow:
        assert uow.session.get_one(Saga, saga_id).lease_until is None
    assert_consistent()


def test_passes_that_run_at_once_resume_each_stuck_saga_once(backend: Backend, engine: LocalEngine) -> None:
    stuck = {stuck_saga(purchase()) for _ in range(6)}

    with ThreadPoolExecutor(PASSES) as pool:
        passes = list(pool.map(lambda _: reconciler.reconcile(boto3_step_functions(), grace_seconds=0), range(PASSES)))

    resumed = [saga_id for done in passes for saga_id in done.resumed]
    assert sorted(resumed) == sorted(stuck)
    for saga_id in stuck:
        assert finish(engine, saga_id).status == "COMPLETED"
        assert saga_executions(saga_id) == [saga_id]
    assert_consistent()


def test_a_start_that_fails_leaves_the_saga_for_the_next_pass(backend: Backend, engine: LocalEngine) -> None:
    saga_id = stuck_saga(purchase())

    def unavailable(saga_type: str, name: str, execution_input: dict[str, Any]) -> str:
        raise step_functions.StepFunctionsUnavailable("throttled")

    failing = StepFunctions(unavailable, step_functions.execution_status, step_functions.execution_arn_for)
    first = reconciler.reconcile(failing, grace_seconds=0)
    second = reconciler.reconcile(boto3_step_functions(), grace_seconds=0)

    assert (first.found, first.resumed) == ([saga_id], [])
    assert (second.found, second.resumed) == ([saga_id], [saga_id])
    assert finish(engine, saga_id).status == "COMPLETED"


def test_each_pass_emits_how_many_sagas_it_found_stuck_and_resumed(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    saga_id = stuck_saga(purchase())
    capsys.readouterr()

    reconciler.reconcile(boto3_step_functions(), grace_seconds=0)
    reconciler.reconcile(boto3_step_functions(), grace_seconds=3600)

    values: dict[str, list[int]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            record = json.loads(line)
            for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
                values.setdefault(metric["Name"], []).append(record[metric["Name"]][0])
    assert values == {metric_names.STUCK_SAGAS_FOUND: [1, 0], metric_names.STUCK_SAGAS_RESUMED: [1, 0]}
    assert finish(engine, saga_id).status == "COMPLETED"


def test_the_scheduled_function_runs_one_pass_with_the_configured_grace_period(
    backend: Backend, engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = stuck_saga(purchase())
    monkeypatch.setattr(get_settings(), "reconciler_grace_seconds", 3600.0)
    assert reconcile.lambda_handler({}, lambda_context(120_000)) == {"found": 0, "resumed": 0}

    monkeypatch.setattr(get_settings(), "reconciler_grace_seconds", 0.0)
    assert reconcile.lambda_handler({}, lambda_context(120_000)) == {"found": 1, "resumed": 1}
    assert finish(engine, saga_id).status == "COMPLETED"
