"""SnapStart: a configuration is initialised once (the handler's import, then the before-snapshot hooks), and every
cold start resumes an environment from that snapshot and runs the after-restore hooks before its first event."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from local_lambda import FunctionConfig, Invocation
from local_lambda.processes import workers_of
from tests.local_lambda.conftest import RecordingRuntime, answer, process_running, wait_until

NAME = "snapstart-describe"


@pytest.fixture
def snapstart(function: Callable[..., FunctionConfig], tmp_path: Path) -> Callable[..., FunctionConfig]:
    def build(**environment: str) -> FunctionConfig:
        variables = {"INIT_LOG": str(tmp_path / "inits.log"), **environment}
        return function("snapstart.describe", snap_start=True, timeout_seconds=2.0, environment=variables)

    return build


def inits(tmp_path: Path) -> list[str]:
    """The pids of the processes that ran the function's init, one line each."""
    log = tmp_path / "inits.log"
    return log.read_text().split() if log.exists() else []


def concurrent(runtime: RecordingRuntime, tmp_path: Path, count: int) -> list[Invocation]:
    """``count`` invocations held together until all have started, so that each needs an environment."""
    release = tmp_path / "release"
    event = json.dumps({"started_dir": str(tmp_path), "release_file": str(release), "hold_seconds": 20}).encode()
    results: list[Invocation] = []
    callers = [threading.Thread(target=lambda: results.append(runtime.invoke(NAME, event))) for _ in range(count)]
    for caller in callers:
        caller.start()
    wait_until(lambda: len(list(tmp_path.glob("*-*-*"))) == count)
    release.touch()
    for caller in callers:
        caller.join(timeout=30)
    return results


def test_one_init_serves_every_cold_start_each_resumed_with_its_after_restore_hooks(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(snapstart())

    cold = concurrent(runtime, tmp_path, 3)
    warm = runtime.invoke(NAME, b"{}")

    assert len(inits(tmp_path)) == 1
    assert len({answer(result)["pid"] for result in cold}) == 3
    assert all(result.cold_start and result.function_error is None for result in cold)
    assert {tuple(answer(result)["hooks_run"]) for result in cold} == {("before_snapshot", "after_restore")}
    assert int(inits(tmp_path)[0]) not in {answer(result)["pid"] for result in cold}
    assert answer(warm)["pid"] in {answer(result)["pid"] for result in cold} and not warm.cold_start
    assert answer(warm)["hooks_run"] == ["before_snapshot", "after_restore"]


def test_a_restored_environment_reports_its_restore_and_has_no_log_variables(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig]
) -> None:
    runtime.register(snapstart())

    cold = runtime.invoke(NAME, b"{}")
    warm = runtime.invoke(NAME, b"{}")

    assert answer(cold)["initialization_type"] == "snap-start"
    assert answer(cold)["log_variables"] == []
    assert cold.init_ms is None and cold.restore_ms is not None and cold.restore_ms > 0
    assert cold.billed_restore_ms is not None and cold.billed_restore_ms >= 1
    cold_report = cold.logs.splitlines()[-1]
    assert "\tRestore Duration: " in cold_report and "\tBilled Restore Duration: " in cold_report
    assert "Init Duration" not in cold_report
    assert warm.restore_ms is None and "Restore Duration" not in warm.logs


def test_a_connection_left_open_at_init_is_dead_after_restore(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig]
) -> None:
    runtime.register(snapstart())

    assert answer(runtime.invoke(NAME, b"{}"))["connection_open"] is False


def test_a_failing_before_snapshot_hook_fails_the_invocation_and_the_next_cold_start_initialises_again(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(snapstart(FAILING_HOOK="before_snapshot"))

    first = runtime.invoke(NAME, b"{}")
    second = runtime.invoke(NAME, b"{}")

    for failed in (first, second):
        assert failed.error_type == "RuntimeError"
        assert answer(failed)["errorMessage"] == "the before_snapshot hook failed"
    assert len(inits(tmp_path)) == 2


def test_a_failing_after_restore_hook_fails_that_invocation(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(snapstart(FAILING_HOOK="after_restore"))

    failed = runtime.invoke(NAME, b"{}")

    assert failed.error_type == "RuntimeError"
    assert answer(failed)["errorMessage"] == "the after_restore hook failed"
    assert failed.worker_pid is not None and not process_running(failed.worker_pid)
    assert len(inits(tmp_path)) == 1


def test_a_crash_and_a_timeout_of_a_restored_environment_are_reported_as_lambda_reports_them(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(snapstart())

    crashed = runtime.invoke(NAME, json.dumps({"exit_status": 3}).encode())
    timed_out = runtime.invoke(NAME, json.dumps({"sleep_seconds": 10}).encode())
    after = runtime.invoke(NAME, b"{}")

    assert crashed.error_type == "Runtime.ExitError"
    assert answer(crashed)["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert timed_out.error_type == "Sandbox.Timedout"
    assert crashed.worker_pid is not None and timed_out.worker_pid is not None
    assert not process_running(crashed.worker_pid) and not process_running(timed_out.worker_pid)
    assert after.function_error is None and after.cold_start
    assert len(inits(tmp_path)) == 1


def test_a_configuration_update_lets_the_invocation_in_flight_finish_and_initialises_the_new_one(
    runtime: RecordingRuntime, snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(snapstart())
    release = tmp_path / "release"
    event = json.dumps({"started_dir": str(tmp_path), "release_file": str(release), "hold_seconds": 20}).encode()
    results: list[Invocation] = []
    caller = threading.Thread(target=lambda: results.append(runtime.invoke(NAME, event)))
    caller.start()
    wait_until(lambda: len(list(tmp_path.glob("*-*-*"))) == 1)

    runtime.register(snapstart(SETTING="changed"))
    after_update = runtime.invoke(NAME, b"{}")
    release.touch()
    caller.join(timeout=30)

    assert results[0].function_error is None
    assert after_update.function_error is None and after_update.cold_start
    assert len(inits(tmp_path)) == 2


def test_shutdown_kills_the_snapshot_and_every_environment_restored_from_it(
    snapstart: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    others = {worker.pid for worker in workers_of(os.getpid())}
    runtime = RecordingRuntime()
    runtime.register(snapstart())
    concurrent(runtime, tmp_path, 2)
    processes = {worker.pid for worker in workers_of(os.getpid())} - others
    assert len(processes) == 3, "the snapshot and the two environments restored from it"

    runtime.shutdown()

    wait_until(lambda: not any(process_running(pid) for pid in processes))
