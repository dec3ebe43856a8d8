"""Starting sagas and reading them back: the service layer between entry points and the data."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.step_functions import StepFunctionsUnavailable
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import SagaRequest
from chalicelib.observability.metric_names import SAGAS_STARTED
from chalicelib.observability.telemetry import emit, logger, saga_scope
from chalicelib.presentation import saga_views
from chalicelib.service.executions import (
    UNFINISHED,
    UNREACHABLE,
    StartExecution,
    execution_name,
    run_again_on_conflict,
)
from chalicelib.settings import get_settings

LOCAL_CALLER = "local"
"""The one principal of a server that authenticates nobody (`make run`, the demo, the tools)."""
NO_CALLER = ""
"""The caller of the rows written before keys had callers (migration 0007)."""


class FaultsNotAllowed(ValueError):
    """The request carries `faults` but SAGA_ALLOW_FAULTS is off."""


class IdempotencyKeyReused(ValueError):
    """The idempotency key already started a saga with a different request."""


class SagaNotStarted(RuntimeError):
    """The saga is recorded, but its execution could not be started now. The reconciler starts it after its grace
    period; the same Idempotency-Key starts it sooner."""

    def __init__(self, saga: Saga, reason: str) -> None:
        super().__init__(f"saga {saga.id} is recorded but its execution could not be started: {reason}")
        self.saga = saga


def start_saga(
    request: SagaRequest,
    start_execution: StartExecution,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    caller: str = LOCAL_CALLER,
) -> Saga:
    """Record the saga as RUNNING, then start its execution, named by the saga id.

    Idempotency keys belong to their caller (the IAM principal on AWS): another caller's key is another key.
    The same caller's key with the same request returns the saga it started (starting its execution if an
    earlier attempt could not, or could not record it); with another request it raises IdempotencyKeyReused.
    SagaNotStarted when Step Functions cannot start the execution now: the saga stays recorded, never orphaned.
    """
    if request.faults and not get_settings().allow_faults:
        raise FaultsNotAllowed("faults are accepted only when SAGA_ALLOW_FAULTS=true")
    request_hash = _fingerprint(request)
    owner = caller_digest(caller)
    saga = _saga_for_key(owner, idempotency_key, request_hash) if idempotency_key else None
    if saga is None:
        try:
            with UnitOfWork() as uow:
                saga = saga_log.create_saga(
                    uow.session, request, idempotency_key, request_hash, correlation_id, caller=owner
                )
                uow.commit()
            with saga_scope(saga_id=saga.id, saga_type=saga.type):
                emit(SAGAS_STARTED, SagaType=saga.type)
        except IntegrityError:
            saga = _saga_for_key(owner, idempotency_key, request_hash) if idempotency_key else None
            if saga is None:
                raise
    if saga.execution_arn:
        return saga
    saga_cache.write_through(saga.id, saga.status, saga.version)
    name = execution_name(saga.id, saga.executions)
    try:
        arn = start_execution(saga.type, name, saga.execution_input())
    except StepFunctionsUnavailable as error:
        raise SagaNotStarted(saga, str(error)) from error
    _record_execution(saga, arn)
    return saga


def _record_execution(saga: Saga, arn: str) -> None:
    """Write the started execution's ARN. A plain UPDATE: its first step may already be writing this saga (and its
    version), and may win a deadlock over the row, so a conflict is run again. If the write is still lost, the saga
    is still found by its execution's name (service/executions.py)."""

    def write() -> None:
        with UnitOfWork() as uow:
            uow.session.execute(
                update(Saga)
                .where(Saga.id == saga.id, Saga.executions == saga.executions)
                .values(execution_arn=arn, updated_at=Saga.updated_at)
                .execution_options(synchronize_session=False)
            )
            uow.commit()

    try:
        run_again_on_conflict(write)
    except UNREACHABLE:
        logger.warning("execution %s started, but its ARN could not be recorded", arn, exc_info=True)
    saga.execution_arn = arn


def _fingerprint(request: SagaRequest) -> str:
    canonical = json.dumps([request.saga_type(), request.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def caller_digest(caller: str) -> str:
    """What a saga row keeps of its caller: a fixed-size digest, not the principal's ARN."""
    return hashlib.sha256(caller.encode()).hexdigest()


def _saga_for_key(owner: str, idempotency_key: str, request_hash: str) -> Saga | None:
    """The saga this caller's key started; or one the key started before keys had callers (migration 0007 left
    those rows' caller empty), so that a retry of such a request still finds its saga."""
    with UnitOfWork() as uow:
        found = uow.session.scalars(
            select(Saga).where(Saga.caller.in_((owner, NO_CALLER)), Saga.idempotency_key == idempotency_key)
        )
        saga = min(found, key=lambda row: row.caller != owner, default=None)
    if saga is not None and saga.request_hash != request_hash:
        raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} already started another request")
    return saga


def read_saga(saga_id: str) -> dict[str, Any] | None:
    """The saga's view: from Redis when cached at its current version, else from the database (cached again)."""
    view = saga_cache.cached_view(saga_id)
    if view is not None:
        return view
    with UnitOfWork() as uow:
        saga = uow.session.get(Saga, saga_id)
        if saga is None:
            return None
        view = saga_views.describe(uow.session, saga)
    saga_cache.store_view(saga.id, saga.status, saga.version, view)
    return view


def read_history(saga_id: str) -> list[dict[str, Any]] | None:
    """The saga's audit log, oldest first; None for an unknown saga."""
    with UnitOfWork() as uow:
        if uow.session.get(Saga, saga_id) is None:
            return None
        return [saga_views.event_view(event) for event in saga_log.history(uow.session, saga_id)]


def await_outcome(saga_id: str, seconds: float) -> dict[str, Any] | None:
    """The saga's view once it has an outcome (any status but RUNNING and COMPENSATING: FAILED too, which only an
    operator moves on), or as it stands after `seconds`; None without waiting when there is no Redis to be told
    through (docs/design.md §3.1).

    No polling: it subscribes to the saga's status moves first, then checks the cached status (a move after the
    check is announced, one before it is seen), sleeps on the subscription, and reads the saga once at the end.
    """
    deadline = time.monotonic() + seconds
    with saga_cache.status_moves(saga_id) as moves:
        if moves is None:
            return None
        status = saga_cache.cached_status(saga_id)
        if status is None:  # not cached (expired, or written while Redis was out): the database says
            view = read_saga(saga_id)
            if view is None or view["status"] not in UNFINISHED:
                return view
            status = view
        while status is not None and status["status"] in UNFINISHED:
            status = moves.next_move(deadline - time.monotonic())
    return read_saga(saga_id)
