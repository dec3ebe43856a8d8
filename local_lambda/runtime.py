"""Lambda, locally: functions served by worker processes that behave like Lambda execution environments.

Each worker handles one event at a time; an idle (warm) one is reused, and when none is idle a new one starts
(a cold start). Invocations over a function's reserved concurrency, or over the account's, are throttled at once.
Timeouts, crashes and memory over the limit kill the worker and are reported as Lambda reports them.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from local_lambda import errors
from local_lambda.config import FunctionConfig
from local_lambda.execution import failed_init, run_cold, run_restored, run_warm
from local_lambda.invocation import Invocation
from local_lambda.snapshot import RESTORE_LIMIT_SECONDS, Snapshot
from local_lambda.worker_process import WorkerProcess

LogSink = Callable[[str, str], None]
"""Called with (function name, log text) once per invocation."""

DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_IDLE_SECONDS = 300.0
INIT_TIMEOUT_SECONDS = 10.0
"""Lambda's limit on an on-demand environment's Init phase."""
_SPAWNER_THREADS = 8


def write_to_stderr(function_name: str, text: str) -> None:
    """The default log sink: the log stream goes to this process's stderr."""
    sys.stderr.write(text)


@dataclass
class _Function:
    config: FunctionConfig
    idle: list[WorkerProcess] = field(default_factory=list)
    """Warm workers, the most recently used last (reused first, as the warmest)."""
    in_flight: int = 0
    snapshot: Snapshot | None = None
    """The configuration's SnapStart snapshot, once a cold start has made it."""
    earlier: list[_Kept] = field(default_factory=list)
    """Earlier configurations with the workers idle when each was replaced, the most recent last."""


@dataclass
class _Kept:
    config: FunctionConfig
    idle: list[WorkerProcess]
    snapshot: Snapshot | None


class LambdaRuntime:
    """Registered functions and their execution environments; ``invoke`` may be called from many threads at once."""

    def __init__(
        self,
        functions: Iterable[FunctionConfig] = (),
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        init_timeout_seconds: float = INIT_TIMEOUT_SECONDS,
        log_sink: LogSink = write_to_stderr,
        earlier_configurations_kept: int = 0,
    ) -> None:
        """``earlier_configurations_kept``: how many replaced configurations of a function keep their idle workers,
        as published versions keep their warm environments: registering one of them again brings its workers back
        instead of starting new ones (a local engine switching a setting back and forth pays no cold starts)."""
        self._earlier_kept = earlier_configurations_kept
        self._max_concurrency = max_concurrency
        self._idle_seconds = idle_seconds
        self._init_timeout_seconds = init_timeout_seconds
        self._log_sink = log_sink
        self._lock = threading.Lock()
        self._functions: dict[str, _Function] = {}
        self._workers: set[WorkerProcess] = set()
        self._in_flight = 0
        self._closed = threading.Event()
        # Workers are started from these long-lived threads: a worker's parent-death signal fires when the thread
        # that started it ends, and the threads calling invoke (one per Step Functions task in moto) come and go.
        self._spawner = ThreadPoolExecutor(_SPAWNER_THREADS, thread_name_prefix="local-lambda-spawn")
        self._reaper = threading.Thread(target=self._reap_idle_workers, name="local-lambda-reaper", daemon=True)
        self._reaper.start()
        atexit.register(self.shutdown)
        for config in functions:
            self.register(config)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def register(self, config: FunctionConfig) -> None:
        """Add a function, or replace one of the same name: its idle workers, running the old code or settings, are
        stopped, or kept aside with their configuration (``earlier_configurations_kept``)."""
        with self._lock:
            function = self._functions.get(config.name)
            if function is None:
                self._functions[config.name] = _Function(config)
                return
            stale, retired = function.idle, [function.snapshot]
            if self._earlier_kept and function.config != config:
                function.earlier.append(_Kept(function.config, stale, function.snapshot))
                stale, retired = [], []
            function.config = config
            back = next((kept for kept in function.earlier if kept.config == config), _Kept(config, [], None))
            function.idle, function.snapshot = back.idle, back.snapshot
            function.earlier = [kept for kept in function.earlier if kept.config != config]
            while len(function.earlier) > self._earlier_kept:
                dropped = function.earlier.pop(0)
                stale += dropped.idle
                retired.append(dropped.snapshot)
            self._workers.difference_update(stale)
        self._close_all(stale)
        for snapshot in retired:
            if snapshot is not None:
                snapshot.retire()

    def invoke(self, name: str, payload: bytes, request_id: str | None = None) -> Invocation:
        """Run one event synchronously (``RequestResponse``), as Lambda's Invoke API does.

        ``name`` is a function name or ARN. Raises ``TooManyRequests`` when the invocation would exceed the
        function's reserved concurrency or the account's, and ``FunctionNotFound`` for an unknown function;
        every failure of the function itself is in the returned ``Invocation``.
        """
        request_id = request_id or str(uuid.uuid4())
        function, config, worker = self._admit(_function_name(name))
        reusable = False
        try:
            if worker is None and config.snap_start:
                invocation, reusable, worker = self._run_restored(function, config, payload, request_id)
            elif worker is None:
                worker = self._start_worker(config)
                invocation, reusable = run_cold(worker, config, payload, request_id, self._init_timeout_seconds)
            else:
                invocation, reusable = run_warm(worker, config, payload, request_id)
        finally:
            self._release(function, config, worker, reusable)
        self._log_sink(config.name, invocation.logs)
        return invocation

    def shutdown(self) -> None:
        """Kill every worker, idle or busy; later invokes fail."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            idle = [worker for function in self._functions.values() for worker in _all_idle(function)]
            busy = self._workers.difference(idle)
            snapshots = [snapshot for function in self._functions.values() for snapshot in _snapshots(function)]
            self._workers.clear()
            for function in self._functions.values():
                function.idle.clear()
                function.earlier.clear()
                function.snapshot = None
        self._close_all(idle)
        for snapshot in snapshots:
            snapshot.kill()
        # A busy worker's socket and pipe belong to the thread waiting on them, which closes them when it sees the
        # worker die.
        for worker in busy:
            worker.kill()
        self._spawner.shutdown(wait=False)
        atexit.unregister(self.shutdown)

    def concurrent_executions(self, name: str) -> int:
        """The function's invocations in flight, as Lambda's ConcurrentExecutions metric counts them."""
        with self._lock:
            function = self._functions.get(name)
            return function.in_flight if function else 0

    def worker_pids(self, name: str) -> list[int]:
        """The pids of the function's idle workers (for tests and diagnostics)."""
        with self._lock:
            function = self._functions.get(name)
            return [worker.pid for worker in function.idle] if function else []

    def _start_worker(self, config: FunctionConfig) -> WorkerProcess:
        return self._tracked(self._spawner.submit(WorkerProcess.start, config).result())

    def _tracked(self, worker: WorkerProcess) -> WorkerProcess:
        """The new worker, among those shutdown kills; closed at once if the runtime is shut down meanwhile."""
        with self._lock:
            closed = self._closed.is_set()
            if not closed:
                self._workers.add(worker)
        if closed:
            worker.close()
            raise RuntimeError("the Lambda runtime is shut down")
        return worker

    def _run_restored(
        self, function: _Function, config: FunctionConfig, payload: bytes, request_id: str
    ) -> tuple[Invocation, bool, WorkerProcess | None]:
        """A cold start of a SnapStart function: its configuration's snapshot (made by the first cold start), then
        an environment restored from it."""
        snapshot = self._snapshot_of(function, config)
        failure = snapshot.initialise(self._spawner, lambda text: self._log_sink(config.name, text))
        if failure is not None and snapshot.template is not None:
            with self._lock:
                if function.snapshot is snapshot:
                    function.snapshot = None  # the next cold start initialises again
            return failed_init(snapshot.template, config, request_id, failure, snapshot.init_ms), False, None
        worker = self._tracked(snapshot.restore(config))
        invocation, reusable = run_restored(worker, config, payload, request_id, RESTORE_LIMIT_SECONDS)
        return invocation, reusable, worker

    def _snapshot_of(self, function: _Function, config: FunctionConfig) -> Snapshot:
        with self._lock:
            if function.config is not config:
                # Replaced since this invocation was admitted: a snapshot of its own, gone with its environment.
                orphan = Snapshot(config)
                orphan.retire()
                return orphan
            if function.snapshot is None:
                function.snapshot = Snapshot(config)
            return function.snapshot

    def _admit(self, name: str) -> tuple[_Function, FunctionConfig, WorkerProcess | None]:
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the Lambda runtime is shut down")
            function = self._functions.get(name)
            if function is None:
                raise errors.FunctionNotFound(name, _unknown_function_arn(name))
            reserved = function.config.reserved_concurrency
            if reserved is not None and function.in_flight >= reserved:
                raise errors.TooManyRequests(name, errors.RESERVED_CONCURRENCY_EXCEEDED)
            if self._in_flight >= self._max_concurrency:
                raise errors.TooManyRequests(name, errors.ACCOUNT_CONCURRENCY_EXCEEDED)
            function.in_flight += 1
            self._in_flight += 1
            worker, dead = None, []
            while function.idle and worker is None:
                candidate = function.idle.pop()
                if candidate.alive():
                    worker = candidate
                else:
                    dead.append(candidate)
            self._workers.difference_update(dead)
            config = function.config
        self._close_all(dead)
        return function, config, worker

    def _release(self, function: _Function, config: FunctionConfig, used: WorkerProcess | None, reusable: bool) -> None:
        with self._lock:
            function.in_flight -= 1
            self._in_flight -= 1
            if used is None:
                return
            # A worker loaded with code that has since been replaced is not reused.
            if reusable and function.config is config and not self._closed.is_set():
                function.idle.append(used)
                return
            self._workers.discard(used)
        used.close()

    def _reap_idle_workers(self) -> None:
        interval = min(max(self._idle_seconds / 4, 0.05), 30.0)
        while not self._closed.wait(interval):
            cutoff = time.monotonic() - self._idle_seconds
            with self._lock:
                expired = [w for f in self._functions.values() for w in _all_idle(f) if w.last_used < cutoff]
                for function in self._functions.values():
                    function.idle = [w for w in function.idle if w.last_used >= cutoff]
                    for kept in function.earlier:
                        kept.idle = [w for w in kept.idle if w.last_used >= cutoff]
                self._workers.difference_update(expired)
            self._close_all(expired)

    @staticmethod
    def _close_all(workers: Iterable[WorkerProcess]) -> None:
        for worker in workers:
            worker.close()


def _all_idle(function: _Function) -> list[WorkerProcess]:
    return function.idle + [worker for kept in function.earlier for worker in kept.idle]


def _snapshots(function: _Function) -> list[Snapshot]:
    found = [function.snapshot] + [kept.snapshot for kept in function.earlier]
    return [snapshot for snapshot in found if snapshot is not None]


def _function_name(name_or_arn: str) -> str:
    """``arn:aws:lambda:region:account:function:name[:qualifier]`` -> ``name``; a plain name stays as it is."""
    if name_or_arn.startswith("arn:") and ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def _unknown_function_arn(name: str) -> str:
    return FunctionConfig(name=name, handler="", code_paths=[]).function_arn
