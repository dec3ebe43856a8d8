"""Host-mode LocalStack: the open-source core run as a process on this machine, without Docker.

It listens on a free loopback port, keeps its files in a folder of its own, and is stopped by its process
id (its whole process group) when the `with` block ends, also on failure or interpreter exit. Without Docker
it runs no Lambda code; Step Functions executions started on `<state machine ARN>#<TestCase>` take their
Task results from the mock-config file given as `mock_config`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import subprocess  # nosec B404
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.engine.ports import free_loopback_port

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PYTHON = ROOT / ".localstack" / "venv" / "bin" / "python"
LOG_TAIL_LINES = 40


class LocalStackDidNotStart(RuntimeError):
    """LocalStack exited or did not report its services ready in time; the message holds its log's tail."""


@dataclass
class HostLocalStack:
    """`with HostLocalStack(workdir=...) as localstack:` LocalStack at `localstack.endpoint_url`."""

    workdir: Path
    python: Path = DEFAULT_PYTHON
    services: tuple[str, ...] = ("stepfunctions",)
    mock_config: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    """More of LocalStack's settings (LAMBDA_RUNTIME_EXECUTOR, ...)."""
    startup_timeout_seconds: float = 90.0
    stop_timeout_seconds: float = 15.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "localstack.log"

    def __enter__(self) -> HostLocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if not self.python.is_file():
            raise LocalStackDidNotStart(
                f"no LocalStack virtualenv at {self.python}: `make test-localstack` creates it "
                "(Python 3.13, infra/deploy/localstack/requirements-host.txt)"
            )
        for folder in ("fs", "tmp"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_loopback_port()
        self._log = self.log_path.open("wb")
        # A session of its own: stop() signals the whole group, so no child outlives LocalStack.
        self.process = subprocess.Popen(  # noqa: S603  # nosec B603
            [str(self.python), "-m", "localstack.runtime.main"],
            env=self._environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _environment(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env |= {
            # The default (Twisted) gateway binds every interface whatever the host part says; hypercorn does not.
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_SERVER": "hypercorn",
            "DNS_ADDRESS": "0",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.workdir / "fs"),
            "TMPDIR": str(self.workdir / "tmp"),
            "SERVICES": ",".join(self.services),
            # Nothing leaves the machine: no usage events, no certificate download.
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
        }
        if self.mock_config is not None:
            env["SFN_MOCK_CONFIG"] = str(self.mock_config)
        return env | self.environment

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_seconds
        last_problem = "no answer yet"
        process = self._running()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalStackDidNotStart(self._failure(f"it exited with code {process.returncode}"))
            try:
                health = self.health()
                states = {name: health["services"].get(name) for name in self.services}
                if all(state in ("available", "running") for state in states.values()):
                    return
                last_problem = f"services not ready: {states}"
            except (OSError, ValueError, KeyError) as error:
                last_problem = str(error)
            time.sleep(0.25)
        raise LocalStackDidNotStart(
            self._failure(f"not ready after {self.startup_timeout_seconds:.0f} s ({last_problem})")
        )

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint_url}/_localstack/health", timeout=2) as answer:  # noqa: S310  # nosec B310
            return dict(json.loads(answer.read()))

    def _failure(self, what: str) -> str:
        where = f"host-mode LocalStack on {self.endpoint_url}"
        return f"{where} did not start: {what}. Last lines of {self.log_path}:\n{self.log_tail()}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.is_file():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def listening_addresses(self) -> list[str]:
        """Local addresses (host:port) that LocalStack's processes listen on, from `ss -ltnp`."""
        pids = self._process_group_pids()
        listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True, timeout=10)  # noqa: S607  # nosec B603 B607
        addresses = []
        for line in listing.stdout.splitlines():
            owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
            if owners & pids:
                addresses.append(line.split()[3])
        return addresses

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError("LocalStack is not started")
        return self.process

    def _process_group_pids(self) -> set[int]:
        group = self._running().pid
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # fields after the command: state, ppid, pgrp
                pids.add(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        """SIGTERM to LocalStack's process group, SIGKILL if it has not exited in time. Safe to call twice."""
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            group = process.pid  # its own session: the group id is its pid
            try:
                os.killpg(group, signal.SIGTERM)
                process.wait(timeout=self.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                process.wait(timeout=self.stop_timeout_seconds)
            except ProcessLookupError:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)  # any child left behind in its group
        if self._log is not None:
            self._log.close()
            self._log = None
