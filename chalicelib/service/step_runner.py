"""Runs one saga step: faults, the domain function, the audit record and the saga's status, in one transaction.

Before it, in a transaction of its own: the attempts that ended before they could record themselves (killed by a
timeout, crashed, throttled) are recorded from what Step Functions passes on, the retry count and the errors its
Catches caught. The saga ends FAILED on the state machine's say: `compensation_failed` runs on the path a
compensation's Catch takes when its retries are spent, however its last attempt ended.

Each caught failure is recorded once, and counted then: a fault of the definition that ran (`DefinitionFaults`,
the canary's alarm) unless it is a declared error (contracts.DECLARED_ERRORS), a throttle that ran out of retries
(`ThrottleRetriesExhausted`) when it is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.orm import exc as orm_exc

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.database_errors import Transience, driver_code, transience
from chalicelib.adapters.tables import Saga
from chalicelib.domain import faults, saga_log
from chalicelib.domain.contracts import COMPENSATIONS, THROTTLED, SagaStatus, StepEvent, StepName
from chalicelib.domain.errors import (
    REJECTIONS,
    ConcurrentUpdate,
    DatabaseUnavailable,
    SagaCancelled,
    SagaNotRunning,
    UnknownSaga,
)
from chalicelib.observability.metric_names import (
    COMPENSATIONS_FAILED,
    COMPENSATIONS_RUN,
    DEFINITION_FAULTS,
    SAGAS_ENDED,
    THROTTLE_RETRIES_EXHAUSTED,
    UNVERSIONED,
)
from chalicelib.observability.telemetry import emit, logger
from chalicelib.settings import get_settings

RECORD_TRIES = 3

StepFunction = Callable[[Session, Saga, int], dict[str, Any]]

ENDS_SAGA_ON_SUCCESS: dict[str, SagaStatus] = {
    "confirm_sale": SagaStatus.COMPLETED,
    "update_stock": SagaStatus.COMPLETED,
    "release_stock": SagaStatus.COMPENSATED,
    "cancel_refund": SagaStatus.COMPENSATED,
}
"""The last forward step and the last compensation of each saga, whose success is the saga's outcome."""

FORWARD_STEPS_REFUSED = frozenset(
    {
        SagaStatus.COMPENSATING,
        SagaStatus.COMPENSATED,
        SagaStatus.CANCELLED,
        SagaStatus.FAILED,
        SagaStatus.RESOLVED,
        SagaStatus.REJECTED,
    }
)
"""A late or repeated delivery, a resumed execution, or a cancelled saga's next step must not move such a saga
forward again."""


def run_step(step: StepFunction, event: StepEvent, request_id: str | None = None) -> dict[str, Any]:
    """Run `step` for the saga in `event` and record the attempt, whether it succeeds or fails."""
    name = step.__name__
    try:
        asked = _prepare(name, event)
        faults.hang_if_asked(asked, name, event.attempt)
        with UnitOfWork() as uow:
            saga = _load_saga(uow.session, event.saga_id)
            if name in COMPENSATIONS:
                saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING, _forward_failure(event))
            elif saga.status in FORWARD_STEPS_REFUSED:
                _refuse_forward_step(uow.session, saga, name)
            faults.inject(saga.input.get("faults", {}), name, event.attempt)
            result = step(uow.session, saga, event.attempt)
            saga_log.record_attempt(
                uow.session, saga, name, event.attempt, payload=result, request_id=request_id, execution=event.execution
            )
            ended = name in ENDS_SAGA_ON_SUCCESS and saga_log.set_status(
                uow.session, saga, _outcome(uow.session, saga, name)
            )
            # The saga's version guards this commit: of a cancel and the last forward step, the first to commit wins
            # and the other one's write fails (StaleDataError), to be answered from what won (docs/design.md §2.8).
            uow.commit()
    except Exception as error:
        failure = _as_step_error(name, error)
        _record_failure(name, event, failure, request_id)  # a fresh connection often works: then it is audited
        if failure is error:
            raise
        raise failure from error
    faults.crash_if_asked(saga.input.get("faults", {}), name, event.attempt)
    saga_cache.write_through(saga.id, saga.status, saga.version)
    if name in COMPENSATIONS:
        emit(COMPENSATIONS_RUN, Step=name)
    if ended:
        _saga_ended(saga, name)
    return result


def _refuse_forward_step(session: Session, saga: Saga, name: str) -> None:
    if saga_log.cancelled(session, saga.id):
        raise SagaCancelled(f"{name}: saga {saga.id} was cancelled; its compensations undo what took effect")
    raise SagaNotRunning(f"{name}: saga is {saga.status}; forward steps no longer run")


def _outcome(session: Session, saga: Saga, name: str) -> SagaStatus:
    """The status the success of `name`, a last step, ends the saga in: a cancelled saga's compensations end it
    CANCELLED."""
    outcome = ENDS_SAGA_ON_SUCCESS[name]
    if outcome is SagaStatus.COMPENSATED and saga_log.cancelled(session, saga.id):
        return SagaStatus.CANCELLED
    return outcome


def compensation_failed(event: StepEvent, request_id: str | None = None) -> dict[str, Any]:
    """The path a compensation's Catch takes once its retries are spent: the saga ends FAILED, naming the
    compensation and its last error, however that attempt ended (an error, a timeout, a crash)."""
    compensation = next((step for step in reversed(event.failures) if step in COMPENSATIONS), None)
    if compensation is None:
        raise ValueError("compensation_failed needs the failure of a compensation in `failures`")
    error = event.failures[compensation]
    with UnitOfWork() as uow:
        saga = _load_saga(uow.session, event.saga_id)
        recorded: list[StepName] = []
        if saga.status == SagaStatus.RUNNING:  # no compensation attempt could record anything
            recorded = _record_caught_failures(uow.session, saga, event, but=compensation)
            saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING, _forward_failure(event))
        ended = saga.status == SagaStatus.COMPENSATING
        if ended:
            saga_log.record_caught_failure(uow.session, saga, compensation, error, event.execution)
            recorded.append(compensation)
            saga_log.set_status(uow.session, saga, SagaStatus.FAILED, failed_step=compensation)
            message = saga_log.message_of(error.Cause)
            saga.result = {"failed_compensation": compensation, "error": {"type": error.Error, "message": message}}
        uow.commit()
    _count_caught_failures(saga, event, recorded)
    saga_cache.write_through(saga.id, saga.status, saga.version)
    if ended:
        _saga_ended(saga, compensation)
    return {"status": saga.status, "failed_compensation": saga.result.get("failed_compensation")}


def _prepare(name: str, event: StepEvent) -> dict[str, str]:
    """Record what earlier attempts and Catches could not, in a transaction of its own (so that it stays even if
    this attempt is killed); the faults the saga's request asked for."""
    if event.attempt == 1 and not event.failures and not get_settings().allow_faults:
        return {}
    with UnitOfWork() as uow:
        saga = uow.session.get(Saga, event.saga_id)
        if saga is None:
            return {}
        if event.attempt > 1:
            saga_log.record_lost_attempts(uow.session, saga, name, event.attempt, event.execution)
        moved = False
        recorded: list[StepName] = []
        if name in COMPENSATIONS and saga.status in (SagaStatus.RUNNING, SagaStatus.COMPLETED):
            # The first compensation of this execution: the step whose failure led here is recorded together with
            # the move that failure causes, so that the compensations after it do not record it again.
            recorded = _record_caught_failures(uow.session, saga, event, but=name)
            moved = saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING, _forward_failure(event))
        uow.commit()
    _count_caught_failures(saga, event, recorded)
    if moved:  # this attempt may be killed before it answers: readers must not go on seeing the old status
        saga_cache.write_through(saga.id, saga.status, saga.version)
    return dict(saga.input.get("faults", {}))


def _forward_failure(event: StepEvent) -> StepName | None:
    """The forward step whose failure a Catch led to the compensations: what sends the saga to COMPENSATING."""
    return next((step for step in reversed(event.failures) if step not in COMPENSATIONS), None)


def _record_caught_failures(session: Session, saga: Saga, event: StepEvent, but: str) -> list[StepName]:
    """Record each caught failure but `but`'s; the steps recorded."""
    recorded = [step for step in event.failures if step != but]
    for step in recorded:
        saga_log.record_caught_failure(session, saga, step, event.failures[step], event.execution)
    return recorded


def _count_caught_failures(saga: Saga, event: StepEvent, steps: list[StepName]) -> None:
    """Once the failures of `steps` are recorded (so once each): the faults of the definition that ran, and the
    last resort, a forward step Lambda refused for longer than its throttle retrier waits (sized in
    docs/design.md §7.3): the saga is compensated though the step never ran. Both are alarmed."""
    for step in steps:
        error = event.failures[step]
        if error.is_fault:
            emit(DEFINITION_FAULTS, SagaType=saga.type, Definition=event.definition or UNVERSIONED)
            logger.warning("definition fault", extra={"failed_step": step, "error_type": error.Error})
        if error.Error == THROTTLED and step not in COMPENSATIONS:
            emit(THROTTLE_RETRIES_EXHAUSTED, SagaType=saga.type, Step=step)
            logger.warning("throttled out: compensating the saga", extra={"step": step, "saga_type": saga.type})


def _saga_ended(saga: Saga, step: str) -> None:
    """`step` decided the saga's outcome; a FAILED one means that compensation gave up."""
    emit(SAGAS_ENDED, SagaType=saga.type, Outcome=saga.status)
    if saga.status == SagaStatus.FAILED:
        emit(COMPENSATIONS_FAILED, Step=step)
    logger.info("saga ended", extra={"outcome": saga.status, "result": saga.result})


def _record_failure(name: str, event: StepEvent, error: Exception, request_id: str | None) -> None:
    """Log the failed attempt, and the saga's outcome when this failure decides it."""
    if isinstance(error, UnknownSaga):
        return
    for tries_left in reversed(range(RECORD_TRIES)):
        try:
            saga, ended = _record_failure_once(name, event, error, request_id)
            break
        except (sa_exc.SQLAlchemyError, ConnectionError) as failure:
            # The pool may hold more connections the server dropped; each try takes the next one.
            if not tries_left or transience(failure) is None:
                logger.exception("could not record the failure of %s for saga %s", name, event.saga_id)
                return
    saga_cache.write_through(saga.id, saga.status, saga.version)
    if ended:
        _saga_ended(saga, name)


def _record_failure_once(name: str, event: StepEvent, error: Exception, request_id: str | None) -> tuple[Saga, bool]:
    """The saga, and whether this failure ended it (a business refusal of the first step)."""
    ended = False
    with UnitOfWork() as uow:
        saga = _load_saga(uow.session, event.saga_id)
        saga_log.record_attempt(
            uow.session, saga, name, event.attempt, error=error, request_id=request_id, execution=event.execution
        )
        if isinstance(error, REJECTIONS):
            ended = saga_log.set_status(uow.session, saga, SagaStatus.REJECTED)
        elif name in COMPENSATIONS:
            saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING, _forward_failure(event))
        uow.commit()
    return saga, ended


def _as_step_error(name: str, error: Exception) -> Exception:
    """A database error as the error the state machine retries, named by what happened (the driver's class and
    code, never the statement or its parameters); any other error as it is."""
    driver_error = getattr(error, "orig", error)
    code = driver_code(driver_error)
    cause = type(driver_error).__name__ + (f" {code}" if code else "")
    if isinstance(error, sa_exc.IntegrityError | orm_exc.StaleDataError):
        return ConcurrentUpdate(f"{name}: a concurrent write won ({cause})")
    kind = transience(error)
    if kind is Transience.CONFLICT:
        return ConcurrentUpdate(f"{name}: another transaction held the rows ({cause})")
    if kind is Transience.UNAVAILABLE:
        return DatabaseUnavailable(f"{name}: the database could not serve the step now ({cause})")
    return error


def _load_saga(session: Session, saga_id: str) -> Saga:
    saga = session.get(Saga, saga_id)
    if saga is None:
        raise UnknownSaga(f"no saga {saga_id}")
    return saga
