"""A redis-server of our own on a free loopback port, for tests and the soak to stop and restart at will."""

from __future__ import annotations

import shutil

# Starts only the redis-server binary, with fixed arguments.
import subprocess  # nosec B404
import time
from pathlib import Path

import redis

from infra.engine.ports import free_loopback_port


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_loopback_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603  # nosec B603
            [server, *arguments, "--dir", str(self.directory)], stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
