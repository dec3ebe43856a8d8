"""The program a worker process runs: one Lambda execution environment, one event at a time.

Started by ``WorkerProcess`` with the protocol socket's fd and the runtime's pid as arguments; stdout and stderr
are the environment's log stream. It loads the handler (init), says so, then answers events until the socket
closes. Everything here is standard library, so it runs on whichever interpreter the function names.
"""

from __future__ import annotations

import contextlib
import ctypes
import decimal
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from local_lambda import errors
from local_lambda.context import LambdaContext
from local_lambda.framing import Frame, Kind, encode, read_frame
from local_lambda.handler_loading import Handler, RuntimeFault, error_log_text, exception_error_object, load_handler
from local_lambda.snapshot_worker import run_hooks, serve_restores

_PR_SET_PDEATHSIG = 1
_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
"""The Python runtime's text log format for the root logger."""

_current_request_id = ""


def main(argv: list[str]) -> None:
    """Serve one execution environment: ``argv`` is ``[program, protocol_fd, runtime_pid]``."""
    protocol_fd, runtime_pid = int(argv[1]), int(argv[2])
    _die_with_runtime(runtime_pid)
    channel = socket.socket(fileno=protocol_fd)
    init = read_frame(channel)
    if init is None or init.kind is not Kind.INIT:
        return
    sys.path[0:0] = init.meta["code_paths"]
    _keep_only_given_environment(set(init.meta["environment"]))
    _install_lambda_log_handler()
    try:
        handler = load_handler(init.meta["handler"])
    except RuntimeFault as exc:
        _fail_init(channel, exc.error)
        return
    if init.meta.get("snap_start"):
        _be_snapshot(channel, handler)
        return
    channel.sendall(encode(Kind.INIT_DONE, _measurements(0.0)))
    _serve_events(channel, handler)


def _serve_events(channel: socket.socket, handler: Handler) -> None:
    while (event := read_frame(channel)) is not None:
        channel.sendall(_handle(handler, event))


def _be_snapshot(channel: socket.socket, handler: Handler) -> None:
    """A SnapStart version's init goes on with the before-snapshot hooks; then this process is the snapshot that
    every environment resumes from (``snapshot_worker``)."""
    if not _hooks_ran(channel, "before_snapshot"):
        return
    ready = encode(Kind.INIT_DONE, _measurements(0.0))
    serve_restores(channel, ready, lambda restored: _serve_restored(restored, handler))


def _serve_restored(channel: socket.socket, handler: Handler) -> None:
    """One environment resumed from the snapshot: the after-restore hooks, then events as any worker."""
    started = time.perf_counter()
    if not _hooks_ran(channel, "after_restore"):
        return
    channel.sendall(encode(Kind.RESTORE_DONE, _measurements((time.perf_counter() - started) * 1000)))
    _serve_events(channel, handler)


def _hooks_ran(channel: socket.socket, kind: str) -> bool:
    """Run the SnapStart hooks of ``kind``; a failing one fails the init, as it fails Lambda's."""
    try:
        run_hooks(kind)
    except Exception as exc:
        _fail_init(channel, exception_error_object(exc))
        return False
    _flush_output()
    return True


def _fail_init(channel: socket.socket, error: dict[str, Any]) -> None:
    _write_log(error_log_text(error))
    _flush_output()
    channel.sendall(encode(Kind.INIT_FAILED, _measurements(0.0), _to_json(error)))


def _keep_only_given_environment(given: set[str]) -> None:
    """Undo what the interpreter added to the environment (``LC_CTYPE`` when it coerces a C locale), and say which
    Python runs the function, as Lambda does in ``AWS_EXECUTION_ENV``."""
    for name in set(os.environ) - given:
        del os.environ[name]
    os.environ.setdefault("AWS_EXECUTION_ENV", f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}")


def _die_with_runtime(runtime_pid: int) -> None:
    """Have the kernel SIGKILL this process when the runtime's thread that started it dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The runtime may have died between starting this process and the prctl above; then no signal will come.
    if os.getppid() != runtime_pid:
        os._exit(1)


def _handle(handler: Handler, frame: Frame) -> bytes:
    global _current_request_id
    request_id: str = frame.meta["request_id"]
    _current_request_id = request_id
    started = time.perf_counter()
    try:
        result_kind, body = Kind.RESULT, _invoke(handler, frame, request_id)
    except RuntimeFault as exc:
        result_kind, body = Kind.FUNCTION_ERROR, _to_json({**exc.error, "requestId": request_id})
        _write_log(error_log_text(exc.error))
    except Exception as exc:
        error = exception_error_object(exc, request_id)
        result_kind, body = Kind.FUNCTION_ERROR, _to_json(error)
        _write_log(error_log_text(error))
    duration_ms = (time.perf_counter() - started) * 1000
    _flush_output()
    return encode(result_kind, _measurements(duration_ms), body)


def _invoke(handler: Handler, frame: Frame, request_id: str) -> bytes:
    try:
        event = json.loads(frame.body)
    except ValueError as exc:
        raise RuntimeFault(errors.error_object(errors.UNMARSHAL_ERROR, f"Unable to unmarshal input: {exc}")) from exc
    context = LambdaContext(request_id, frame.meta["invoked_function_arn"], frame.meta["deadline_epoch_ms"])
    result = handler(event, context)
    if isinstance(result, bytes):
        return result
    try:
        return _to_json(result)
    except (TypeError, ValueError) as exc:
        raise RuntimeFault(errors.error_object(errors.MARSHAL_ERROR, f"Unable to marshal response: {exc}")) from exc


def _to_json(value: Any) -> bytes:
    return json.dumps(value, default=_decimal_as_number, allow_nan=False).encode()


def _decimal_as_number(value: object) -> object:
    # Lambda's marshaller writes Decimals (what DynamoDB returns) as JSON numbers.
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _measurements(duration_ms: float) -> dict[str, Any]:
    return {"duration_ms": duration_ms, "max_rss_kb": _peak_rss_kb()}


def _peak_rss_kb() -> int:
    """This process's peak resident memory since it started.

    Read from ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` over an exec, so a worker started
    from a large process would report that process's size.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _write_log(text: str) -> None:
    sys.stdout.write(text)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_request_id
        return True


def _install_lambda_log_handler() -> None:
    """Give the root logger the handler Lambda's Python runtime installs (text format, UTC, the request id)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.terminator = ""
    formatter = logging.Formatter(_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)
