"""A SnapStart function: what its init, its runtime hooks and each event see."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from snapshot_restore_py import register_after_restore, register_before_snapshot

with Path(os.environ["INIT_LOG"]).open("a") as init_log:
    init_log.write(f"{os.getpid()}\n")
hooks_run: list[str] = []
# A connection opened at init and still open when the snapshot is taken.
kept_open, far_end = socket.socketpair()


def _hook(name: str) -> None:
    hooks_run.append(name)
    if os.environ.get("FAILING_HOOK") == name:
        raise RuntimeError(f"the {name} hook failed")


register_before_snapshot(_hook, "before_snapshot")
register_after_restore(_hook, "after_restore")


def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("exit_status"):
        os._exit(event["exit_status"])
    deadline = time.monotonic() + event.get("hold_seconds", 0)
    release = Path(event["release_file"]) if "release_file" in event else None
    if release:
        Path(event["started_dir"], context.aws_request_id).touch()
    while release and not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(event.get("sleep_seconds", 0))
    return {
        "pid": os.getpid(),
        "hooks_run": hooks_run,
        "initialization_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "log_variables": sorted(name for name in os.environ if name.startswith("AWS_LAMBDA_LOG_")),
        "connection_open": _still_open(),
    }


def _still_open() -> bool:
    try:
        kept_open.sendall(b"x")
    except OSError:
        return False
    return True
