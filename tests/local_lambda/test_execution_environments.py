"""Warm reuse, cold starts, one event at a time per environment, and the log stream around each invocation."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from local_lambda import FunctionConfig, Invocation
from tests.local_lambda.conftest import RecordingRuntime, answer, wait_until


def test_a_warm_environment_is_reused_for_the_next_event(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.echo"))

    first = runtime.invoke("basic-echo", b'{"n": 1}')
    second = runtime.invoke("basic-echo", b'{"n": 2}')

    assert (first.cold_start, second.cold_start) == (True, False)
    assert answer(first)["pid"] == answer(second)["pid"] == first.worker_pid
    assert answer(second)["event"] == {"n": 2}
    assert first.function_error is None
    assert first.init_ms is not None and first.init_ms > 0
    assert second.init_ms is None


def test_an_environment_serves_one_event_at_a_time_so_concurrent_events_start_another(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(function("basic.wait_for_release"))
    release = tmp_path / "release"
    event = json.dumps({"started_dir": str(tmp_path), "release_file": str(release)}).encode()
    results: list[Invocation] = []
    callers = [threading.Thread(target=lambda: results.append(runtime.invoke("basic-wait_for_release", event)))]
    callers.append(threading.Thread(target=lambda: results.append(runtime.invoke("basic-wait_for_release", event))))

    for caller in callers:
        caller.start()
    wait_until(lambda: len(list(tmp_path.glob("*-*"))) == 2)
    release.touch()
    for caller in callers:
        caller.join(timeout=30)

    assert len(results) == 2
    assert {answer(result) for result in results} == {result.worker_pid for result in results}
    assert len({result.worker_pid for result in results}) == 2
    assert all(result.cold_start for result in results)
    assert len(runtime.worker_pids("basic-wait_for_release")) == 2


def test_a_burst_starts_its_cold_environments_side_by_side(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("slow_init.handler", environment={"INIT_SECONDS": "1"}))
    results: list[Invocation] = []
    callers = [
        threading.Thread(target=lambda: results.append(runtime.invoke("slow_init-handler", b"{}"))) for _ in range(4)
    ]

    started = time.monotonic()
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)
    elapsed = time.monotonic() - started

    assert len({result.worker_pid for result in results}) == 4
    assert all(result.cold_start and result.init_ms is not None and result.init_ms >= 1000 for result in results)
    assert elapsed < 3.5, "four 1-second inits took as long as running them one after another"


def test_the_log_stream_frames_what_the_handler_printed_with_start_end_and_report(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.chatty", memory_mb=512))

    cold = runtime.invoke("basic-chatty", b"{}", request_id="req-1")
    warm = runtime.invoke("basic-chatty", b"{}", request_id="req-2")

    lines = warm.logs.splitlines()
    assert lines[0] == "START RequestId: req-2 Version: $LATEST"
    assert "printed to stdout" in lines and "written to stderr" in lines
    assert any(re.fullmatch(r"\[WARNING\]\t\S+Z\treq-2\tlogged a warning", line) for line in lines)
    assert lines[-2] == "END RequestId: req-2"
    report = (
        r"REPORT RequestId: req-2\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 512 MB"
        r"\tMax Memory Used: \d+ MB\t"
    )
    assert re.fullmatch(report, lines[-1])
    assert re.search(r"\tInit Duration: \d+\.\d\d ms\t$", cold.logs.splitlines()[-1])
    assert cold.logs.index("basic: module imported") < cold.logs.index("START RequestId: req-1")
    assert "module imported" not in warm.logs
    assert runtime.logged == [("basic-chatty", cold.logs), ("basic-chatty", warm.logs)]


def test_report_figures_match_the_invocation(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.echo", memory_mb=300))

    cold = runtime.invoke("basic-echo", b"{}")
    warm = runtime.invoke("basic-echo", b"{}")

    assert cold.init_ms is not None
    assert cold.billed_ms >= cold.init_ms + cold.duration_ms
    assert warm.billed_ms >= warm.duration_ms
    assert 0 < warm.max_memory_mb < 300
    assert warm.memory_size_mb == 300
    assert f"Max Memory Used: {warm.max_memory_mb} MB" in warm.logs


def test_an_invoke_by_arn_reaches_the_function(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    config = function("basic.echo", name="echo", arn="arn:aws:lambda:eu-west-1:111122223333:function:echo")
    runtime.register(config)

    invocation = runtime.invoke("arn:aws:lambda:eu-west-1:111122223333:function:echo:live", b'"hi"')

    assert answer(invocation)["event"] == "hi"


def test_large_events_answers_and_logs_pass_whole(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.large"))
    event = {"log_bytes": 3_000_000, "result_bytes": 5_000_000, "padding": "z" * 5_000_000}

    invocation = runtime.invoke("basic-large", json.dumps(event).encode())

    assert answer(invocation) == "y" * 5_000_000
    assert "x" * 3_000_000 in invocation.logs


def test_idle_environments_are_reaped(function: Callable[..., FunctionConfig]) -> None:
    with RecordingRuntime(idle_seconds=0.2) as runtime:
        runtime.register(function("basic.echo"))
        first = runtime.invoke("basic-echo", b"{}")

        wait_until(lambda: not runtime.worker_pids("basic-echo"))
        again = runtime.invoke("basic-echo", b"{}")

    assert again.cold_start
    assert again.worker_pid != first.worker_pid


def test_a_configuration_update_replaces_the_environments(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.echo", memory_mb=256))
    first = runtime.invoke("basic-echo", b"{}")
    runtime.register(function("basic.echo", memory_mb=512))
    runtime.register(function("basic.echo", memory_mb=256))

    again = runtime.invoke("basic-echo", b"{}")

    assert again.cold_start and again.worker_pid != first.worker_pid


def test_kept_earlier_configurations_serve_again_with_their_warm_environments(
    function: Callable[..., FunctionConfig],
) -> None:
    small, large, largest = (function("basic.echo", memory_mb=size) for size in (256, 512, 1024))
    with RecordingRuntime(earlier_configurations_kept=1) as runtime:
        runtime.register(small)
        first = runtime.invoke("basic-echo", b"{}")
        runtime.register(large)
        on_large = runtime.invoke("basic-echo", b"{}")
        runtime.register(small)
        back = runtime.invoke("basic-echo", b"{}")
        runtime.register(large)
        runtime.register(largest)  # `small` is now two configurations back: its environment is stopped
        runtime.register(small)
        beyond = runtime.invoke("basic-echo", b"{}")

    assert on_large.cold_start and on_large.worker_pid != first.worker_pid
    assert not back.cold_start and back.worker_pid == first.worker_pid
    assert beyond.cold_start and beyond.worker_pid not in (first.worker_pid, on_large.worker_pid)
