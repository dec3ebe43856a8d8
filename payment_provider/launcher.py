"""Start the provider as a child process (for tests, `make run`, demos) and stop it again.

The child is tied to its parent: Linux sends it SIGTERM when the parent dies, even by SIGKILL, so a killed
test run never leaves a provider behind holding its port.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import signal
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, cast

from payment_provider import config

REPOSITORY = Path(__file__).resolve().parent.parent
_READY = re.compile(r"payment provider listening on (http://(?P<host>[^:\s]+):(?P<port>\d+))")
_KEPT_OUTPUT_LINES = 200


class ProviderStartError(RuntimeError):
    """The provider exited or did not answer in time; the message ends with what it printed."""


class RunningProvider:
    """A provider child process: `.url`, `.port`, `.api_key`, `.stop()`; a context manager stops it on exit."""

    def __init__(self, process: subprocess.Popen[str], url: str, port: int, api_key: str, output: _OutputTail) -> None:
        self.process = process
        self.url = url
        self.port = port
        self.api_key = api_key
        self._output = output

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def output(self) -> str:
        """The last lines the provider printed (its log is on stderr, merged here)."""
        return self._output.text()

    def stop(self, timeout_seconds: float = 5.0) -> int:
        """SIGTERM, wait up to `timeout_seconds`, then SIGKILL; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.join()
        return self.process.returncode

    def __enter__(self) -> RunningProvider:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_provider(
    port: int = 0,
    database_url: str | None = None,
    env: Mapping[str, str | None] | None = None,
    ready_timeout_seconds: float = 15.0,
) -> RunningProvider:
    """Start `python -m payment_provider` on loopback `port` (0: a free one) and wait until it answers.

    `database_url` is its `PROVIDER_DATABASE_URL` (None: the environment's, else the default SQLite file);
    `env` adds to this process's environment, a None value removing a variable. Call it from a thread that
    lives as long as the provider should (Linux ties the child to the thread that started it).
    """
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", config.PARENT_PID: str(os.getpid())}
    for name, value in {**(env or {}), **({config.DATABASE_URL: database_url} if database_url else {})}.items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), child_env.get("PYTHONPATH")]))
    process = subprocess.Popen(  # noqa: S603  # nosec B603
        [sys.executable, "-m", "payment_provider", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPOSITORY,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _OutputTail(process)
    api_key = child_env.get(config.API_KEY) or config.DEFAULT_API_KEY
    deadline = time.monotonic() + ready_timeout_seconds
    try:
        url, bound_port = output.wait_for_ready(deadline)
        _wait_until_healthy(bound_port, deadline)
    except ProviderStartError as error:
        RunningProvider(process, "", port, api_key, output).stop(timeout_seconds=2)
        raise ProviderStartError(f"{error}; its output:\n{output.text()}") from None
    return RunningProvider(process, url, bound_port, api_key, output)


class _OutputTail:
    """Drains the child's output on a thread (a full pipe would block it), keeping the last lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._lines: collections.deque[str] = collections.deque(maxlen=_KEPT_OUTPUT_LINES)
        self._ready = threading.Event()
        self._ready_match: re.Match[str] | None = None
        self._thread = threading.Thread(target=self._drain, name=f"provider-{process.pid}-output", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in cast(IO[str], self._process.stdout):
            self._lines.append(line.rstrip("\n"))
            match = _READY.search(line)
            if match and not self._ready.is_set():
                self._ready_match = match
                self._ready.set()
        self._ready.set()  # the output ended: whoever waits for the ready line must stop waiting

    def wait_for_ready(self, deadline: float) -> tuple[str, int]:
        """The URL and port from the ready line, once the child printed it."""
        if not self._ready.wait(max(0.0, deadline - time.monotonic())):
            raise ProviderStartError("the payment provider did not report that it listens in time")
        if self._ready_match is None:
            raise ProviderStartError(f"the payment provider exited with status {self._process.wait()}")
        return self._ready_match.group(1), int(self._ready_match.group("port"))

    def text(self) -> str:
        return "\n".join(self._lines)

    def join(self) -> None:
        self._thread.join(timeout=2)


def _wait_until_healthy(port: int, deadline: float) -> None:
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise ProviderStartError("the payment provider does not answer GET /health")
        time.sleep(0.05)
