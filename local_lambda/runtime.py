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
from local_lambda.execution import run_cold, run_warm
from local_lambda.invocation import Invocation
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
    earlier: list[tuple[FunctionConfig, list[WorkerProcess]]] = field(default_factory=list)
    """Earlier configurations with the workers idle when each was replaced, the most recent last."""


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
            stale = function.idle
            if self._earlier_kept and function.config != config:
                function.earlier.append((function.config, stale))
                stale = []
            function.config = config
            function.idle = next((kept for earlier, kept in function.earlier if earlier == config), [])
            function.earlier = [(earlier, kept) for earlier, kept in function.earlier if earlier != config]
            while len(function.earlier) > self._earlier_kept:
                stale += function.earlier.pop(0)[1]
            self._workers.difference_update(stale)
        self._close_all(stale)

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
            if worker is None:
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
            self._workers.clear()
            for function in self._functions.values():
                function.idle.clear()
                function.earlier.clear()
        self._close_all(idle)
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
        worker = self._spawner.submit(WorkerProcess.start, config).result()
        with self._lock:
            closed = self._closed.is_set()
            if not closed:
                self._workers.add(worker)
        if closed:
            worker.close()
            raise RuntimeError("the Lambda runtime is shut down")
        return worker

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
                    function.earlier = [
                        (config, [w for w in kept if w.last_used >= cutoff]) for config, kept in function.earlier
                    ]
                self._workers.difference_update(expired)
            self._close_all(expired)

    @staticmethod
    def _close_all(workers: Iterable[WorkerProcess]) -> None:
        for worker in workers:
            worker.close()


def _all_idle(function: _Function) -> list[WorkerProcess]:
    return function.idle + [worker for _, kept in function.earlier for worker in kept]


def _function_name(name_or_arn: str) -> str:
    """``arn:aws:lambda:region:account:function:name[:qualifier]`` -> ``name``; a plain name stays as it is."""
    if name_or_arn.startswith("arn:") and ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def _unknown_function_arn(name: str) -> str:
    return FunctionConfig(name=name, handler="", code_paths=[]).function_arn
