"""An operator's actions on one saga (docs/design.md §3.1): resolve a FAILED saga fixed by hand, cancel a RUNNING one.

Each is a status move of NEXT_STATUSES, logged with the operator's action and caller (and a resolve's note), and
made under the saga's version: of an action and a step (or another action) that move the saga at once, the first
to commit wins and the other finds what won. A cancel is the move RUNNING -> COMPENSATING: from then on no forward
step acts (each raises SagaCancelled into its Catch), the compensations undo what took effect, and the last of
them ends the saga CANCELLED (service/step_runner.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm import exc as orm_exc

from chalicelib.adapters import saga_cache
from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.database_errors import is_lock_conflict
from chalicelib.adapters.tables import Saga
from chalicelib.domain import saga_log
from chalicelib.domain.contracts import SagaStatus
from chalicelib.observability.metric_names import OPERATOR_ACTIONS, SAGAS_ENDED
from chalicelib.observability.telemetry import emit, logger, saga_scope
from chalicelib.service.executions import UNREACHABLE, give_back, take_lease

TRIES = 3
"""How often an action reads the saga again after a concurrent move won: a saga moves a few times in its life."""


class NotActionable(ValueError):
    """The saga's status does not allow the action (or kept changing while it was tried): answered 409."""


Decision = Callable[[Session, Saga], bool]
"""Given the saga as it is now (and the session it was read in): True to make the move, False when it is already
made (a repeated action); raises NotActionable when the status does not allow it."""


def resolve(saga_id: str, note: str, caller: str) -> Saga | None:
    """Close a FAILED saga whose cause an operator fixed by hand: it ends RESOLVED, the note and the caller in its
    history. The saga, or None if there is no such saga. A retry starting the saga's next execution holds its lease:
    the resolve is refused rather than race it."""

    def decide(_: Session, saga: Saga) -> bool:
        if saga.status != SagaStatus.FAILED:
            raise NotActionable(f"saga {saga_id} is {saga.status}; only a FAILED saga can be resolved")
        return True

    with UnitOfWork() as uow:
        found = uow.session.get(Saga, saga_id)
        if found is None:
            return None
        decide(uow.session, found)
    lease = take_lease(saga_id, (SagaStatus.FAILED,))
    if lease is None:
        raise NotActionable(f"saga {saga_id} is being retried right now, or has just moved on")
    action = {saga_log.OPERATOR_ACTION: saga_log.RESOLVE, "caller": caller, "note": note}
    try:
        saga = _move(saga_id, SagaStatus.RESOLVED, action, decide)
    finally:
        with contextlib.suppress(*UNREACHABLE):
            give_back(saga_id, lease)
    if saga is not None:
        with saga_scope(saga_id=saga.id, saga_type=saga.type):
            emit(SAGAS_ENDED, SagaType=saga.type, Outcome=SagaStatus.RESOLVED)
    return saga


def cancel(saga_id: str, caller: str) -> Saga | None:
    """Stop a RUNNING saga: the cancel is recorded (the move to COMPENSATING, with its caller), then no forward step
    acts, the compensations undo what took effect and the saga ends CANCELLED. A saga being cancelled is answered as
    it is (a repeated cancel); a saga compensating after a failure, or ended, refuses: NotActionable. The saga, or
    None if there is no such saga."""

    def decide(session: Session, saga: Saga) -> bool:
        if saga.status == SagaStatus.RUNNING:
            return True
        if saga.status == SagaStatus.COMPENSATING:
            if saga_log.cancelled(session, saga.id):
                return False
            raise NotActionable(f"saga {saga_id} is COMPENSATING after a failure: its compensation goes on and ends it")
        raise NotActionable(f"saga {saga_id} is {saga.status}; only a RUNNING saga can be cancelled")

    action = {saga_log.OPERATOR_ACTION: saga_log.CANCEL, "caller": caller}
    return _move(saga_id, SagaStatus.COMPENSATING, action, decide)


def _move(saga_id: str, status: SagaStatus, action: dict[str, str], decide: Decision) -> Saga | None:
    """Move the saga to `status` if `decide` says so, under its version; read again and decide again when a
    concurrent move won."""
    name = action[saga_log.OPERATOR_ACTION]
    tries = 0
    while True:
        tries += 1
        try:
            with UnitOfWork() as uow:
                saga = uow.session.get(Saga, saga_id)
                if saga is None:
                    return None
                moved = decide(uow.session, saga) and saga_log.set_status(uow.session, saga, status, by_operator=action)
                uow.commit()
            break
        except (orm_exc.StaleDataError, DBAPIError) as error:
            if isinstance(error, DBAPIError) and not is_lock_conflict(error):
                raise
            if tries == TRIES:
                raise NotActionable(f"saga {saga_id} kept changing during the {name}; try again") from None
    if moved:
        saga_cache.write_through(saga.id, saga.status, saga.version)
        with saga_scope(saga_id=saga.id, saga_type=saga.type):
            emit(OPERATOR_ACTIONS, SagaType=saga.type, Action=name)
            logger.info("operator action", extra={"action": name, "status": status})
    return saga
