"""Fault injection for demos, tests and chaos runs (docs/design.md §2), honoured only when allowed.

`fail` and `transient:N` raise inside the step's transaction. `timeout[:N]` hangs the attempt before it
commits anything, until the function's timeout kills it; `crash[:N]` ends the process right after the step
committed, before it answers. Those two need a Lambda execution environment (a worker process locally): killing
or hanging any other process would take the caller down with it.
"""

from __future__ import annotations

import os
import threading

from chalicelib.domain.contracts import Fault, fault_for
from chalicelib.domain.errors import InjectedFault, TransientFault
from chalicelib.settings import get_settings

CRASH_EXIT_STATUS = 1


def inject(faults: dict[str, str], step: str, attempt: int) -> None:
    """Raise the failure the saga's request asked for at this step and attempt, if any."""
    fault = _asked(faults, step)
    if fault is None or not fault.hits(attempt):
        return
    if fault.kind == "fail":
        raise InjectedFault(f"{step}: permanent failure injected by the request")
    if fault.kind == "transient":
        raise TransientFault(f"{step}: transient failure {attempt} of {fault.times} injected by the request")


def hang_if_asked(faults: dict[str, str], step: str, attempt: int) -> None:
    """`timeout`: wait here, holding nothing, until the function's timeout ends the process."""
    fault = _asked(faults, step)
    if fault is not None and fault.kind == "timeout" and fault.hits(attempt):
        _require_execution_environment(step, "timeout")
        threading.Event().wait()


def crash_if_asked(faults: dict[str, str], step: str, attempt: int) -> None:
    """`crash`: the step's effect is committed; end the process before it answers."""
    fault = _asked(faults, step)
    if fault is not None and fault.kind == "crash" and fault.hits(attempt):
        _require_execution_environment(step, "crash")
        os._exit(CRASH_EXIT_STATUS)


def _asked(faults: dict[str, str], step: str) -> Fault | None:
    if not faults or not get_settings().allow_faults:
        return None
    return fault_for(faults, step)


def _require_execution_environment(step: str, kind: str) -> None:
    if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
        raise InjectedFault(f"{step}: a {kind} fault needs a Lambda execution environment (a worker process)")
