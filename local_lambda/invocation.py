"""What one invocation returned and measured, and the log stream lines Lambda writes around it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from local_lambda.config import FUNCTION_VERSION

TIMEOUT_STATUS = "timeout"
ERROR_STATUS = "error"


@dataclass(frozen=True)
class Invocation:
    """The answer of one synchronous invoke, as Lambda's Invoke API gives it, plus what its REPORT line says."""

    request_id: str
    payload: bytes
    """The JSON the handler returned, or the error object."""
    function_error: str | None
    """``Unhandled`` when the invocation failed (Invoke's ``X-Amz-Function-Error``); None when it succeeded."""
    cold_start: bool
    init_ms: float | None
    """The new execution environment's init (interpreter start and handler import); None when warm or restored."""
    duration_ms: float
    billed_ms: int
    memory_size_mb: int
    max_memory_mb: int
    logs: str
    """This invocation's part of the log stream: START, what the handler printed, END, REPORT."""
    worker_pid: int | None
    """The process that served it (None if none started)."""
    restore_ms: float | None = None
    """A SnapStart environment's restore (resuming the snapshot and the after-restore hooks); None otherwise."""
    billed_restore_ms: int | None = None
    """What of the restore is billed: the after-restore hooks, rounded up to 1 ms."""

    @property
    def error_type(self) -> str | None:
        """The error object's ``errorType`` (the name a Step Functions ``Catch`` matches) when the invocation failed."""
        if self.function_error is None:
            return None
        try:
            error = json.loads(self.payload)
        except ValueError:
            return None
        return error.get("errorType") if isinstance(error, dict) else None


def billed_ms(duration_ms: float, init_ms: float | None) -> int:
    """Billed Duration: the invoke (plus, on a cold start, the init, as billed since August 2025) rounded up to 1 ms.

    Lambda's own example REPORT line shows it: ``Duration: 15.74 ms  Billed Duration: 147 ms ... Init Duration:
    130.49 ms`` (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html).
    """
    return max(math.ceil(duration_ms + (init_ms or 0.0)), 1)


def start_line(request_id: str) -> str:
    """``START RequestId: <id> Version: $LATEST``."""
    return f"START RequestId: {request_id} Version: {FUNCTION_VERSION}\n"


def end_line(request_id: str) -> str:
    """``END RequestId: <id>``."""
    return f"END RequestId: {request_id}\n"


def report_line(invocation: Invocation, status: str | None = None) -> str:
    """The REPORT line, tab-separated with a trailing tab as Lambda prints it.

    Init Duration only on a cold start. When Lambda itself ended the invocation, the line ends with ``Status:
    timeout``, or ``Status: error`` and the ``Error Type``: Lambda's current log format, which replaced the
    separate "Task timed out" / "Runtime exited" lines (examples under "Failures during the invoke phase" in
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
    """
    fields = [
        f"REPORT RequestId: {invocation.request_id}",
        f"Duration: {invocation.duration_ms:.2f} ms",
        f"Billed Duration: {invocation.billed_ms} ms",
        f"Memory Size: {invocation.memory_size_mb} MB",
        f"Max Memory Used: {invocation.max_memory_mb} MB",
    ]
    if invocation.init_ms is not None:
        fields.append(f"Init Duration: {invocation.init_ms:.2f} ms")
    if invocation.restore_ms is not None:
        # The fields of https://docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html.
        fields.append(f"Restore Duration: {invocation.restore_ms:.2f} ms")
        fields.append(f"Billed Restore Duration: {invocation.billed_restore_ms} ms")
    if status is not None:
        fields.append(f"Status: {status}")
        if status == ERROR_STATUS:
            fields.append(f"Error Type: {invocation.error_type}")
    return "\t".join(fields) + "\t\n"
