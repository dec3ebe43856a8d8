"""One invocation on one worker, with Lambda's semantics: init, the event under the timeout, the memory limit.

Each function returns the ``Invocation`` and whether the worker may serve another event (it may not after a
failed init, a timeout, an exit or memory over the limit: it has been killed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time

from local_lambda import errors
from local_lambda.config import FunctionConfig
from local_lambda.framing import Kind, encode
from local_lambda.invocation import (
    ERROR_STATUS,
    TIMEOUT_STATUS,
    Invocation,
    billed_ms,
    end_line,
    report_line,
    start_line,
)
from local_lambda.worker_process import Exchange, WorkerProcess


def run_cold(
    worker: WorkerProcess, config: FunctionConfig, payload: bytes, request_id: str, init_timeout_seconds: float
) -> tuple[Invocation, bool]:
    """Wait for a new worker's init, then run the event on it; a failed init is this invocation's error.

    An init over Lambda's Init limit is retried by Lambda within the invocation, under the function's timeout, so
    init may take up to both together, and a timeout then is reported as the function's timeout.
    """
    init = worker.await_frame(time.monotonic() + init_timeout_seconds + config.timeout_seconds)
    init_ms = (time.perf_counter() - worker.started) * 1000
    if init.frame is not None and init.frame.kind is Kind.INIT_DONE:
        worker.max_rss_kb = init.frame.meta["max_rss_kb"]
        return _run_event(worker, config, payload, request_id, init_output=init.output, init_ms=init_ms)
    return failed_init(worker, config, request_id, init, init_ms), False


def run_restored(
    worker: WorkerProcess, config: FunctionConfig, payload: bytes, request_id: str, restore_limit_seconds: float
) -> tuple[Invocation, bool]:
    """Wait for an environment restored from a SnapStart snapshot to run its after-restore hooks, then run the
    event on it; a failed hook is this invocation's error."""
    restore = worker.await_frame(time.monotonic() + restore_limit_seconds)
    restore_ms = (time.perf_counter() - worker.started) * 1000
    if restore.frame is not None and restore.frame.kind is Kind.RESTORE_DONE:
        worker.max_rss_kb = restore.frame.meta["max_rss_kb"]
        restored = _Restored(restore_ms, billed_ms(restore.frame.meta["duration_ms"], None))
        return _run_event(worker, config, payload, request_id, restore.output, init_ms=None, restored=restored)
    return failed_init(worker, config, request_id, restore, None, _Restored(restore_ms, 0)), False


def failed_init(
    worker: WorkerProcess,
    config: FunctionConfig,
    request_id: str,
    init: Exchange,
    init_ms: float | None,
    restored: _Restored | None = None,
) -> Invocation:
    """The invocation whose environment failed before the event: its init, a snapshot's, or a restore."""
    if init.frame is not None:
        worker.kill()
        outcome = _Outcome(init.frame.body, errors.UNHANDLED)
    else:
        outcome = _lost(init, request_id, config.timeout_seconds)
    return _invocation(worker, config, request_id, outcome, "", 0.0, init.output, init_ms, restored)


def run_warm(worker: WorkerProcess, config: FunctionConfig, payload: bytes, request_id: str) -> tuple[Invocation, bool]:
    """Run the event on a worker that has already served one."""
    return _run_event(worker, config, payload, request_id, init_output="", init_ms=None)


@dataclasses.dataclass(frozen=True)
class _Restored:
    restore_ms: float
    billed_ms: int


class _Outcome:
    """The payload the caller gets, whether it is an error, and the REPORT line's status if Lambda ended it."""

    def __init__(self, payload: bytes, function_error: str | None, status: str | None = None) -> None:
        self.payload = payload
        self.function_error = function_error
        self.status = status


def _run_event(
    worker: WorkerProcess,
    config: FunctionConfig,
    payload: bytes,
    request_id: str,
    init_output: str,
    init_ms: float | None,
    restored: _Restored | None = None,
) -> tuple[Invocation, bool]:
    meta = {
        "request_id": request_id,
        "invoked_function_arn": config.function_arn,
        "deadline_epoch_ms": int(time.time() * 1000 + config.timeout_seconds * 1000),
    }
    started = time.perf_counter()
    answer = worker.exchange(encode(Kind.EVENT, meta, payload), time.monotonic() + config.timeout_seconds)
    reusable = False
    if answer.frame is None:
        duration_ms = (time.perf_counter() - started) * 1000
        outcome = _lost(answer, request_id, config.timeout_seconds)
    else:
        worker.max_rss_kb = answer.frame.meta["max_rss_kb"]
        duration_ms = answer.frame.meta["duration_ms"]
        if worker.max_rss_kb > config.memory_mb * 1024:
            # Lambda stops an environment the moment it goes over; this one is stopped when it says it went over.
            worker.kill()
            outcome = _out_of_memory(request_id)
        else:
            function_error = errors.UNHANDLED if answer.frame.kind is Kind.FUNCTION_ERROR else None
            outcome = _Outcome(answer.frame.body, function_error)
            reusable = True
    invocation = _invocation(
        worker, config, request_id, outcome, answer.output, duration_ms, init_output, init_ms, restored
    )
    return invocation, reusable


def _lost(exchange: Exchange, request_id: str, timeout_seconds: float) -> _Outcome:
    """The worker timed out or exited before answering."""
    if exchange.timed_out:
        message = errors.timeout_message(request_id, timeout_seconds)
        return _Outcome(_platform_error(errors.SANDBOX_TIMEDOUT, message), errors.UNHANDLED, TIMEOUT_STATUS)
    returncode = exchange.returncode if exchange.returncode is not None else -signal.SIGKILL
    message = errors.exit_message(request_id, returncode)
    return _Outcome(_platform_error(errors.RUNTIME_EXIT_ERROR, message), errors.UNHANDLED, ERROR_STATUS)


def _out_of_memory(request_id: str) -> _Outcome:
    message = errors.exit_message(request_id, -signal.SIGKILL)
    return _Outcome(_platform_error(errors.RUNTIME_OUT_OF_MEMORY, message), errors.UNHANDLED, ERROR_STATUS)


def _platform_error(error_type: str, message: str) -> bytes:
    return json.dumps(errors.platform_error_object(error_type, message)).encode()


def _invocation(
    worker: WorkerProcess,
    config: FunctionConfig,
    request_id: str,
    outcome: _Outcome,
    output: str,
    duration_ms: float,
    init_output: str,
    init_ms: float | None,
    restored: _Restored | None = None,
) -> Invocation:
    draft = Invocation(
        request_id=request_id,
        payload=outcome.payload,
        function_error=outcome.function_error,
        cold_start=init_ms is not None or restored is not None,
        init_ms=init_ms,
        duration_ms=duration_ms,
        billed_ms=billed_ms(duration_ms, init_ms),
        memory_size_mb=config.memory_mb,
        max_memory_mb=math.ceil(worker.max_rss_kb / 1024),
        logs="",
        worker_pid=worker.pid,
        restore_ms=restored.restore_ms if restored else None,
        billed_restore_ms=restored.billed_ms if restored else None,
    )
    logs = (
        _lines(init_output)
        + start_line(request_id)
        + _lines(output)
        + end_line(request_id)
        + report_line(draft, outcome.status)
    )
    return dataclasses.replace(draft, logs=logs)


def _lines(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"
