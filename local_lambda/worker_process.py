"""One worker process seen from the runtime: start it, exchange frames with it under a deadline, kill it.

The worker is alone in its own process group (killing the group also kills anything the handler started), talks
on a socketpair passed as an extra fd, and writes its stdout and stderr into one pipe that is read while it works
(so a chatty handler never blocks on a full pipe) and cut per invocation when its answer arrives: the answer is
sent after the handler's output was written, so by then all of that output is in the pipe.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess  # workers start from our own argument list, never through a shell  # nosec B404
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from local_lambda.config import FunctionConfig, new_log_stream_name, worker_environment
from local_lambda.framing import Frame, FrameBuffer, Kind, encode

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# Loads the worker program without running this package's __init__ (which imports the runtime side, a cost every
# cold start would pay) and without putting this checkout on sys.path, where function code would see it.
_BOOTSTRAP = (
    "import sys, types\n"
    "package = types.ModuleType('local_lambda')\n"
    "package.__path__ = [sys.argv.pop()]\n"
    "sys.modules['local_lambda'] = package\n"
    "from local_lambda.worker_main import main\n"
    "main(sys.argv)\n"
)
_READ_SIZE = 1 << 16
_EXIT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Exchange:
    """How waiting for the worker's answer ended: a frame, a timeout, or the worker's exit."""

    frame: Frame | None
    output: str
    """What the worker wrote to stdout/stderr meanwhile."""
    timed_out: bool = False
    returncode: int | None = None
    """The worker's exit status (negative: killed by that signal) when it exited instead of answering."""


class Process(Protocol):
    """What a worker needs of its process: a ``Popen``, or an environment restored from a snapshot."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class WorkerProcess:
    """A started worker; used by one invocation at a time."""

    def __init__(self, process: Process, channel: socket.socket, log_fd: int, started: float) -> None:
        self._process = process
        self._channel = channel
        self._log_fd = log_fd
        self._frames = FrameBuffer()
        self._selector = selectors.DefaultSelector()
        self._selector.register(channel, selectors.EVENT_READ)
        self._selector.register(log_fd, selectors.EVENT_READ)
        self.started = started
        """``time.perf_counter()`` just before the process was started."""
        self.max_rss_kb = 0
        """The peak resident memory it last reported."""
        self.last_used = time.monotonic()

    @property
    def channel(self) -> socket.socket:
        """The protocol socket (a snapshot's runtime side reads its reports there)."""
        return self._channel

    @property
    def pid(self) -> int:
        """The worker's process id (also its process group id)."""
        return self._process.pid

    @classmethod
    def start(cls, config: FunctionConfig) -> WorkerProcess:
        """Start a worker for the function and ask it to load the handler.

        Linux delivers a worker's parent-death signal when the *thread* that started it ends, so call this from a
        thread that lives as long as the runtime.
        """
        environment = worker_environment(config, new_log_stream_name())
        runtime_end, worker_end = socket.socketpair()
        log_read, log_write = os.pipe()
        started = time.perf_counter()
        try:
            process = subprocess.Popen(  # noqa: S603 (our interpreter and arguments, no shell)  # nosec B603
                [
                    config.python,
                    "-u",
                    "-P",
                    "-c",
                    _BOOTSTRAP,
                    str(worker_end.fileno()),
                    str(os.getpid()),
                    _PACKAGE_DIR,
                ],
                env=environment,
                cwd=config.code_paths[0] if config.code_paths else None,
                stdin=subprocess.DEVNULL,
                stdout=log_write,
                stderr=log_write,
                pass_fds=(worker_end.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            runtime_end.close()
            os.close(log_read)
            raise
        finally:
            worker_end.close()
            os.close(log_write)
        os.set_blocking(log_read, False)
        worker = cls(process, runtime_end, log_read, started)
        init = {
            "handler": config.handler,
            "code_paths": config.code_paths,
            "environment": sorted(environment),
            "snap_start": config.snap_start,
        }
        worker._send(encode(Kind.INIT, init))
        return worker

    def await_frame(self, deadline: float) -> Exchange:
        """Wait until the worker answers, exits, or ``deadline`` (``time.monotonic()``) passes; then it is killed."""
        output = bytearray()
        while (frame := self._frames.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                output += self._drain_output()
                return Exchange(None, _decode(output), timed_out=True)
            for key, _ in self._selector.select(remaining):
                if key.fileobj is self._channel:
                    data = self._channel.recv(_READ_SIZE)
                    if not data:
                        return self._exited(output)
                    self._frames.feed(data)
                else:
                    output += self._read_output()
        output += self._drain_output()
        self.last_used = time.monotonic()
        return Exchange(frame, _decode(output))

    def exchange(self, frame: bytes, deadline: float) -> Exchange:
        """Send one frame and wait for the answer as ``await_frame`` does."""
        if not self._send(frame):
            return self._exited(bytearray())
        return self.await_frame(deadline)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and reap the worker."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def close(self) -> None:
        """Kill the worker (if it still runs) and release the socket, pipe and selector."""
        self.kill()
        self._selector.close()
        self._channel.close()
        with contextlib.suppress(OSError):
            os.close(self._log_fd)

    def _send(self, frame: bytes) -> bool:
        try:
            self._channel.sendall(frame)
        except OSError:
            return False
        return True

    def _exited(self, output: bytearray) -> Exchange:
        returncode: int | None
        try:
            returncode = self._process.wait(_EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            # It closed the socket but did not exit: as good as dead to Lambda, which would have stopped it.
            self.kill()
            returncode = self._process.returncode
        self.kill()
        output += self._drain_output()
        return Exchange(None, _decode(output), returncode=returncode)

    def _read_output(self) -> bytes:
        try:
            data = os.read(self._log_fd, _READ_SIZE)
        except BlockingIOError:
            return b""
        if not data:
            self._selector.unregister(self._log_fd)
        return data

    def _drain_output(self) -> bytes:
        drained = bytearray()
        while True:
            try:
                data = os.read(self._log_fd, _READ_SIZE)
            except (BlockingIOError, OSError):
                return bytes(drained)
            if not data:
                return bytes(drained)
            drained += data


def _decode(output: bytearray | bytes) -> str:
    return bytes(output).decode("utf-8", errors="replace")
