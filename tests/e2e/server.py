"""`make run`'s server as a subprocess on a free loopback port, and a small JSON client for it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.adapters.payment_provider import PaymentProviderClient
from infra.engine.ports import free_loopback_port
from tests.conftest import Backend
from tests.helpers import FINAL_STATUSES, ROOT, child_env

ANSWER_SECONDS = 120
"""How long a request may take: on the embedded default each of its transactions may wait SQLite's 30 s busy
timeout behind the steps' writes, which a machine busy with disk work (CI installing a package) makes real."""


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=ANSWER_SECONDS) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def final(self, saga_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, view = self.call("GET", f"/sagas/{saga_id}")
            assert status == 200, view
            if view["status"] in FINAL_STATUSES:
                return view
            time.sleep(0.05)
        raise AssertionError(f"saga {saga_id} did not end in {timeout} s")


class Server:
    """`make run`'s server as a subprocess; its output goes to a file so a chatty server never blocks on a pipe."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.api = Api(f"http://127.0.0.1:{port}")
        self.process: subprocess.Popen[str] | None = None

    def provider(self) -> PaymentProviderClient:
        """The client of the payment provider the server started (its own ledger)."""
        return PaymentProviderClient(f"http://127.0.0.1:{self.env['PROVIDER_PORT']}", "sk_test_local")

    def start(self) -> None:
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infra.engine.local_server"],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early: {self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not listen on {self.port} within 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)


SERVER_TIME_SCALE = "0.01"


@contextmanager
def running_server(backend: Backend, log: Path, **extra_env: str) -> Iterator[Server]:
    """`make run`'s server over `backend`'s data stores, faults accepted; killed on leaving. Its Retry waits are
    a hundredth of the deployed ones (`LOCAL_TIME_SCALE`), unless a test that needs them whole passes its own."""
    port = free_loopback_port()
    env = child_env(
        backend.database_url,
        backend.tool_redis_url,
        PORT=str(port),
        PROVIDER_PORT=str(free_loopback_port()),
        PROVIDER_DATABASE_URL=f"sqlite:///{log.parent / 'provider.db'}",
        SAGA_ALLOW_FAULTS="true",
        **({"LOCAL_TIME_SCALE": SERVER_TIME_SCALE} | extra_env),
    )
    running = Server(env, port, log)
    running.start()
    try:
        yield running
    finally:
        running.kill()
