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
    """The live local_lambda workers whose parent is `parent_pid`, and the environments restored from those that
    are SnapStart snapshots (their children)."""
    children = _workers_by_parent(proc)
    found, parents = [], [parent_pid]
    while parents:
        below = [worker for parent in parents for worker in children.get(parent, [])]
        found += below
        parents = [worker.pid for worker in below]
    return found


def _workers_by_parent(proc: Path) -> dict[int, list[WorkerInfo]]:
    found: dict[int, list[WorkerInfo]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if WORKER_MARK in cmdline:
            worker = WorkerInfo(int(entry.name), int(fields.get("VmHWM", "0 kB").split()[0]))
            found.setdefault(int(fields.get("PPid", "0")), []).append(worker)
    return found
