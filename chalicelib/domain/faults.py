"""Fault injection for demos, tests and chaos runs (docs/design.md §2), honoured only when allowed."""

from __future__ import annotations

from chalicelib.domain.contracts import fault_for
from chalicelib.domain.errors import InjectedFault, TransientFault
from chalicelib.settings import get_settings


def inject(faults: dict[str, str], step: str, attempt: int) -> None:
    """Raise the failure the saga's request asked for at this step and attempt, if any."""
    if not faults or not get_settings().allow_faults:
        return
    fault = fault_for(faults, step)
    if fault is None:
        return
    kind, times = fault
    if kind == "fail":
        raise InjectedFault(f"{step}: permanent failure injected by the request")
    if attempt <= times:
        raise TransientFault(f"{step}: transient failure {attempt} of {times} injected by the request")
