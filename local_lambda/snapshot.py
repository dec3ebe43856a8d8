"""SnapStart, seen from the runtime: a version's snapshot, made once, and the environments restored from it.

Lambda initialises a SnapStart version once, when the version is published: the handler's import and the
before-snapshot hooks, within max(130 s, the timeout). Every cold start after that resumes an environment from the
snapshot and runs the after-restore hooks, within 10 s, before the first event
(https://docs.aws.amazon.com/lambda/latest/dg/snapstart-runtime-hooks-python.html). Here the snapshot is a worker
process kept at that point (``snapshot_worker``), and each restore is a fork of it that then serves events as any
worker does. The REPORT line of a restored environment's first event carries ``Restore Duration`` instead of
``Init Duration``, and the environment has neither ``AWS_LAMBDA_LOG_GROUP_NAME`` nor ``AWS_LAMBDA_LOG_STREAM_NAME``
(https://docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html).

A snapshot outlives the configuration it was made for until the last environment restored from it has exited:
a configuration update lets the invocations in flight finish, as it does on Lambda.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess  # nosec B404 (only for its TimeoutExpired)
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from local_lambda.config import FunctionConfig, new_log_stream_name, worker_environment
from local_lambda.framing import Kind, encode, read_frame
from local_lambda.worker_process import Exchange, WorkerProcess

SNAPSHOT_INIT_LIMIT_SECONDS = 130.0
"""A SnapStart version's init may take 130 s, or the function's timeout if that is longer."""
RESTORE_LIMIT_SECONDS = 10.0
"""The runtime's load and the after-restore hooks must finish within 10 s."""
_KILLED = -9


class Snapshot:
    """One configuration's snapshot. ``initialise`` once (any thread may call it: the first does the work), then
    ``restore`` for each cold start; ``retire`` when the configuration is gone."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.template: WorkerProcess | None = None
        self.failure: Exchange | None = None
        self.init_ms = 0.0
        self._init_lock = threading.Lock()
        self._initialised = False
        self._restore_lock = threading.Lock()
        self._restored: queue.Queue[int | None] = queue.Queue()
        self._state = threading.Condition()
        self._exits: dict[int, int] = {}
        self._live: set[int] = set()
        self._retired = False
        self._gone = False

    def initialise(self, spawner: Executor, on_init_output: Callable[[str], None]) -> Exchange | None:
        """Make the snapshot unless it is made: None once it is ready, else the failed init's exchange (the same for
        every caller, as every invocation of a version whose snapshot failed fails)."""
        with self._init_lock:
            if not self._initialised:
                self._initialised = True
                self._make(spawner, on_init_output)
        return self.failure

    def restore(self, config: FunctionConfig) -> WorkerProcess:
        """A new environment resumed from the snapshot; its first frame is RESTORE_DONE, or INIT_FAILED when an
        after-restore hook failed."""
        if self.template is None or self.failure is not None:
            raise RuntimeError(f"the snapshot of {config.name} is not ready")
        runtime_end, environment_end = socket.socketpair()
        log_read, log_write = os.pipe()
        started = time.perf_counter()
        request = encode(Kind.RESTORE, {"environment": worker_environment(config, new_log_stream_name())})
        try:
            with self._restore_lock:
                pid = None
                if not self._gone:
                    socket.send_fds(self.template.channel, [request], [environment_end.fileno(), log_write])
                    pid = self._restored.get()
        except BaseException:
            runtime_end.close()
            os.close(log_read)
            raise
        finally:
            environment_end.close()
            os.close(log_write)
        if pid is None:
            runtime_end.close()
            os.close(log_read)
            raise RuntimeError(f"the snapshot of {config.name} is gone")
        os.set_blocking(log_read, False)
        return WorkerProcess(RestoredProcess(pid, self), runtime_end, log_read, started)

    def retire(self) -> None:
        """The configuration is replaced: the snapshot goes once no environment restored from it is left."""
        with self._state:
            self._retired = True
            done = not self._live
        if done:
            self._close()

    def kill(self) -> None:
        """Shutdown: the snapshot goes now, and every environment restored from it dies with it."""
        with self._state:
            self._retired = True
        self._close()

    def exit_status(self, pid: int, timeout: float | None) -> int | None:
        """The restored environment's exit status once it has exited, waiting up to ``timeout`` (None: for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            while pid not in self._exits and not self._gone:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._state.wait(remaining)
            return self._exits.get(pid, _KILLED)

    def _make(self, spawner: Executor, on_init_output: Callable[[str], None]) -> None:
        # Started from the runtime's long-lived threads, as every worker is (its parent-death signal).
        template = spawner.submit(WorkerProcess.start, self.config).result()
        limit = max(SNAPSHOT_INIT_LIMIT_SECONDS, self.config.timeout_seconds)
        init = template.await_frame(time.monotonic() + limit)
        self.init_ms = (time.perf_counter() - template.started) * 1000
        if init.output:
            on_init_output(init.output)
        if init.frame is None or init.frame.kind is not Kind.INIT_DONE:
            self.failure = init
            self.template = template
            template.close()
            return
        template.max_rss_kb = init.frame.meta["max_rss_kb"]
        self.template = template
        threading.Thread(
            target=self._read_reports, args=(template,), name=f"snapshot-{self.config.name}", daemon=True
        ).start()

    def _read_reports(self, template: WorkerProcess) -> None:
        while True:
            try:
                frame = read_frame(template.channel)
            except OSError:
                frame = None
            if frame is None:
                break
            if frame.kind is Kind.RESTORED:
                with self._state:
                    self._exits.pop(frame.meta["pid"], None)
                    self._live.add(frame.meta["pid"])
                self._restored.put(frame.meta["pid"])
            elif frame.kind is Kind.EXITED:
                with self._state:
                    self._exits[frame.meta["pid"]] = frame.meta["returncode"]
                    self._live.discard(frame.meta["pid"])
                    done = self._retired and not self._live
                    self._state.notify_all()
                if done:
                    self._close()
        with self._state:
            self._gone = True
            self._state.notify_all()
        self._restored.put(None)

    def _close(self) -> None:
        if self.template is not None:
            self.template.close()


class RestoredProcess:
    """A restored environment's process, as ``WorkerProcess`` uses a ``Popen``: the snapshot's process is its
    parent and reports its exit."""

    def __init__(self, pid: int, snapshot: Snapshot) -> None:
        self.pid = pid
        self._snapshot = snapshot
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._snapshot.exit_status(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._snapshot.exit_status(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"restored environment {self.pid}", timeout or 0.0)
        return self.returncode
