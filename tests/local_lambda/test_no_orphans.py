"""Workers never outlive the runtime: not after shutdown, and not when the runtime's process is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

from local_lambda import FunctionConfig, Invocation, LambdaRuntime
from tests.local_lambda.conftest import HANDLERS_DIR, process_running, wait_until

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def test_shutdown_kills_every_worker(function: Callable[..., FunctionConfig]) -> None:
    runtime = LambdaRuntime([function("basic.echo")], log_sink=lambda name, text: None)
    pid = runtime.invoke("basic-echo", b"{}").worker_pid
    assert pid is not None and process_running(pid)

    runtime.shutdown()

    assert not process_running(pid)


def test_shutdown_stops_an_invocation_in_flight(function: Callable[..., FunctionConfig], tmp_path: Path) -> None:
    runtime = LambdaRuntime([function("basic.sleep", timeout_seconds=60)], log_sink=lambda name, text: None)
    pid_file = tmp_path / "worker.pid"
    event = json.dumps({"seconds": 60, "pid_file": str(pid_file)}).encode()
    results: list[Invocation] = []
    caller = threading.Thread(target=lambda: results.append(runtime.invoke("basic-sleep", event)))
    caller.start()
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")

    runtime.shutdown()
    caller.join(timeout=10)

    assert not caller.is_alive()
    assert results[0].error_type == "Runtime.ExitError"
    assert results[0].worker_pid == int(pid_file.read_text())
    assert not process_running(results[0].worker_pid)


def test_workers_die_with_a_runtime_process_that_is_sigkilled(tmp_path: Path) -> None:
    pid_file = tmp_path / "busy-worker.pid"
    program = textwrap.dedent(
        f"""
        import json, threading
        from local_lambda import FunctionConfig, Invocation, LambdaRuntime

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
    with subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None
            idle_worker = int(parent.stdout.readline())
            wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
            busy_worker = int(pid_file.read_text())
            assert process_running(idle_worker) and process_running(busy_worker)
        finally:
            parent.send_signal(signal.SIGKILL)

    wait_until(lambda: not process_running(idle_worker) and not process_running(busy_worker), seconds=5)
