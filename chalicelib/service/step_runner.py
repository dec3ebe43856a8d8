"""Runs one saga step: faults, the domain function, the audit record and the saga's status, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.orm import exc as orm_exc

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.tables import Saga
from chalicelib.domain import faults, saga_log
from chalicelib.domain.contracts import COMPENSATIONS, SagaStatus, StepEvent
from chalicelib.domain.errors import REJECTIONS, ConcurrentUpdate, DatabaseUnavailable, SagaNotRunning, UnknownSaga
from chalicelib.observability.metric_names import COMPENSATIONS_FAILED, COMPENSATIONS_RUN, SAGAS_ENDED
from chalicelib.observability.telemetry import emit, logger

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
    {SagaStatus.COMPENSATING, SagaStatus.COMPENSATED, SagaStatus.FAILED, SagaStatus.REJECTED}
)
"""A late or repeated delivery, or a resumed execution, must not move such a saga forward again."""


def run_step(step: StepFunction, event: StepEvent) -> dict[str, Any]:
    """Run `step` for the saga in `event` and record the attempt, whether it succeeds or fails."""
    name = step.__name__
    try:
        with UnitOfWork() as uow:
            saga = _load_saga(uow.session, event.saga_id)
            if name in COMPENSATIONS:
                saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING)
            elif saga.status in FORWARD_STEPS_REFUSED:
                raise SagaNotRunning(f"{name}: saga is {saga.status}; forward steps no longer run")
            faults.inject(saga.input.get("faults", {}), name, event.attempt)
            result = step(uow.session, saga, event.attempt)
            saga_log.record_attempt(uow.session, saga, name, event.attempt, payload=result)
            ended = name in ENDS_SAGA_ON_SUCCESS and saga_log.set_status(uow.session, saga, ENDS_SAGA_ON_SUCCESS[name])
            uow.commit()
    except (sa_exc.IntegrityError, orm_exc.StaleDataError) as error:
        conflict = ConcurrentUpdate(f"{name}: {getattr(error, 'orig', error)}")
        _record_failure(name, event, conflict)
        raise conflict from error
    except (sa_exc.OperationalError, sa_exc.InterfaceError, ConnectionError) as error:
        # (pg8000 lets a reset socket escape as a bare ConnectionError when the pool pings a dropped connection.)
        unavailable = DatabaseUnavailable(f"{name}: database unreachable: {getattr(error, 'orig', error)}")
        _record_failure(name, event, unavailable)  # a fresh connection often works: the attempt is then audited
        raise unavailable from error
    except Exception as error:
        _record_failure(name, event, error)
        raise
    saga_cache.write_through(saga.id, saga.status, saga.version)
    if name in COMPENSATIONS:
        emit(COMPENSATIONS_RUN, Step=name)
    if ended:
        _saga_ended(saga, name)
    return result


def _saga_ended(saga: Saga, step: str) -> None:
    """`step` decided the saga's outcome; a FAILED one means that compensation gave up."""
    emit(SAGAS_ENDED, SagaType=saga.type, Outcome=saga.status)
    if saga.status == SagaStatus.FAILED:
        emit(COMPENSATIONS_FAILED, Step=step)
    logger.info("saga ended", extra={"outcome": saga.status, "result": saga.result})


def _record_failure(name: str, event: StepEvent, error: Exception) -> None:
    """Log the failed attempt, and the saga's outcome when this failure decides it."""
    if isinstance(error, UnknownSaga):
        return
    for tries_left in reversed(range(RECORD_TRIES)):
        try:
            saga, ended = _record_failure_once(name, event, error)
            break
        except (sa_exc.OperationalError, sa_exc.InterfaceError, ConnectionError):
            # The pool may hold more connections the server dropped; each try takes the next one.
            if not tries_left:
                logger.exception("could not record the failure of %s for saga %s", name, event.saga_id)
                return
        except sa_exc.SQLAlchemyError:
            logger.exception("could not record the failure of %s for saga %s", name, event.saga_id)
            return
    saga_cache.write_through(saga.id, saga.status, saga.version)
    if ended:
        _saga_ended(saga, name)


def _record_failure_once(name: str, event: StepEvent, error: Exception) -> tuple[Saga, bool]:
    """The saga, and whether this failure ended it."""
    ended = False
    with UnitOfWork() as uow:
        saga = _load_saga(uow.session, event.saga_id)
        saga_log.record_attempt(uow.session, saga, name, event.attempt, error=error)
        if isinstance(error, REJECTIONS):
            ended = saga_log.set_status(uow.session, saga, SagaStatus.REJECTED)
        elif name in COMPENSATIONS:
            saga_log.set_status(uow.session, saga, SagaStatus.COMPENSATING)
            if event.is_last_attempt and saga_log.set_status(uow.session, saga, SagaStatus.FAILED):
                error_details = {"type": type(error).__name__, "message": str(error)}
                saga.result = {"failed_compensation": name, "error": error_details}
                ended = True
        uow.commit()
    return saga, ended


def _load_saga(session: Session, saga_id: str) -> Saga:
    saga = session.get(Saga, saga_id)
    if saga is None:
        raise UnknownSaga(f"no saga {saga_id}")
    return saga
