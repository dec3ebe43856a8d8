"""A PostgreSQL cluster of our own on a free loopback port, for tests to stop and restart at will."""

from __future__ import annotations

import glob
import os
import shutil

# Runs only PostgreSQL's own initdb and pg_ctl, with fixed arguments.
import subprocess  # nosec B404
from pathlib import Path

from infra.engine.ports import free_loopback_port


class PrivatePostgres:
    def __init__(self, directory: Path) -> None:
        self.port = free_loopback_port()
        self.directory = directory
        self.data = directory / "data"
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not binaries:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = Path(binaries[-1])

    @property
    def url(self) -> str:
        return f"postgresql+pg8000://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60)  # noqa: S603  # nosec B603
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
