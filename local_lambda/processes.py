"""The worker processes a process started, read from /proc (Linux): for diagnostics, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORKER_MARK = b"local_lambda.worker_main"


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    peak_rss_kb: int
    """VmHWM: the most resident memory the worker has used."""


def workers_of(parent_pid: int, proc: Path = Path("/proc")) -> list[WorkerInfo]:
    """The live local_lambda workers whose parent is `parent_pid`."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0")) == parent_pid and WORKER_MARK in cmdline:
            found.append(WorkerInfo(int(entry.name), int(fields.get("VmHWM", "0 kB").split()[0])))
    return found
