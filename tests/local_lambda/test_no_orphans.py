"""Workers never outlive the runtime: not after shutdown, and not when the runtime's process is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from local_lambda import FunctionConfig, LambdaRuntime
from tests.local_lambda.conftest import HANDLERS_DIR, process_running, wait_until

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def test_shutdown_kills_every_worker(function: Callable[..., FunctionConfig]) -> None:
    runtime = LambdaRuntime([function("basic.echo")], log_sink=lambda name, text: None)
    pid = runtime.invoke("basic-echo", b"{}").worker_pid
    assert pid is not None and process_running(pid)

    runtime.shutdown()

    assert not process_running(pid)


def test_workers_die_with_a_runtime_process_that_is_sigkilled(tmp_path: Path) -> None:
    pid_file = tmp_path / "busy-worker.pid"
    program = textwrap.dedent(
        f"""
        import json, threading
        from local_lambda import FunctionConfig, LambdaRuntime

        runtime = LambdaRuntime(
            [FunctionConfig("echo", "basic.echo", [{str(HANDLERS_DIR)!r}]),
             FunctionConfig("sleep", "basic.sleep", [{str(HANDLERS_DIR)!r}], timeout_seconds=60)],
            log_sink=lambda name, text: None,
        )
        # Invoked from a thread that then ends, as moto's task threads do: its worker must outlive that thread.
        pids = []
        caller = threading.Thread(target=lambda: pids.append(runtime.invoke("echo", b"{{}}").worker_pid))
        caller.start()
        caller.join()
        print(pids[0], flush=True)
        # And one worker busy in its handler when the runtime dies.
        runtime.invoke("sleep", json.dumps({{"seconds": 60, "pid_file": {str(pid_file)!r}}}).encode())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        idle_worker = int(parent.stdout.readline())
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        busy_worker = int(pid_file.read_text())
        assert process_running(idle_worker) and process_running(busy_worker)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    wait_until(lambda: not process_running(idle_worker) and not process_running(busy_worker), seconds=5)
