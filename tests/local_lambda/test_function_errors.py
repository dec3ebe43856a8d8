"""What a failed invocation reports, with the names and messages Lambda uses (see local_lambda/errors.py)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from local_lambda import FunctionConfig
from tests.local_lambda.conftest import RecordingRuntime, answer, process_running

REQUEST_ID = "7f3c2a4e-0000-4000-8000-000000000001"


def test_a_timeout_kills_the_environment_and_the_next_event_gets_a_fresh_one(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.sleep", timeout_seconds=0.5))

    started = time.monotonic()
    timed_out = runtime.invoke("basic-sleep", b'{"seconds": 30}', request_id=REQUEST_ID)
    elapsed = time.monotonic() - started

    assert elapsed < 10
    assert timed_out.function_error == "Unhandled"
    assert answer(timed_out) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Task timed out after 0.50 seconds",
    }
    assert timed_out.worker_pid is not None and not process_running(timed_out.worker_pid)
    assert timed_out.logs.splitlines()[-2] == f"END RequestId: {REQUEST_ID}"
    assert timed_out.logs.endswith("\tStatus: timeout\t\n")

    after = runtime.invoke("basic-sleep", b'{"seconds": 0}')
    assert after.cold_start
    assert after.function_error is None
    assert after.worker_pid != timed_out.worker_pid


def test_an_init_that_never_finishes_times_out(function: Callable[..., FunctionConfig]) -> None:
    with RecordingRuntime(init_timeout_seconds=0.3) as runtime:
        runtime.register(function("slow_init.handler", timeout_seconds=0.5, environment={"INIT_SECONDS": "30"}))

        started = time.monotonic()
        timed_out = runtime.invoke("slow_init-handler", b"{}", request_id=REQUEST_ID)
        elapsed = time.monotonic() - started

    assert elapsed < 10
    assert answer(timed_out) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Task timed out after 0.50 seconds",
    }
    assert timed_out.cold_start
    assert timed_out.worker_pid is not None and not process_running(timed_out.worker_pid)


def test_a_process_exit_loses_the_answer_but_not_the_effect(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(function("basic.exit_after_marking"))
    marker = tmp_path / "marker"
    runtime.invoke("basic-exit_after_marking", json.dumps({"marker": "/dev/null"}).encode())

    crashed = runtime.invoke(
        "basic-exit_after_marking", json.dumps({"marker": str(marker)}).encode(), request_id=REQUEST_ID
    )

    assert marker.read_text() == "the effect happened"
    assert crashed.function_error == "Unhandled"
    assert answer(crashed) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Runtime exited with error: exit status 3",
    }
    assert crashed.worker_pid is not None and not process_running(crashed.worker_pid)
    assert crashed.logs.endswith("\tStatus: error\tError Type: Runtime.ExitError\t\n")
    assert runtime.invoke("basic-exit_after_marking", b'{"marker": "/dev/null"}').cold_start


def test_a_process_killed_by_a_signal_is_reported_as_lambda_words_it(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.kill_itself"))

    killed = runtime.invoke("basic-kill_itself", b"{}", request_id=REQUEST_ID)

    assert answer(killed) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Runtime exited with error: signal: killed",
    }


def test_a_process_that_exits_with_status_0_gives_no_reason(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.exit_quietly"))

    exited = runtime.invoke("basic-exit_quietly", b"{}", request_id=REQUEST_ID)

    assert answer(exited) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Runtime exited without providing a reason",
    }


def test_an_exception_in_the_handler_is_reported_by_its_class_name(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.decline"))

    declined = runtime.invoke("basic-decline", b"{}", request_id=REQUEST_ID)
    again = runtime.invoke("basic-decline", b"{}")

    error = answer(declined)
    assert declined.function_error == "Unhandled"
    assert declined.error_type == "PaymentDeclined"
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == (
        "PaymentDeclined",
        "card declined",
        REQUEST_ID,
    )
    assert any('basic.py", line' in frame and "in decline" in frame for frame in error["stackTrace"])
    assert not any("worker_main.py" in frame for frame in error["stackTrace"])
    assert "[ERROR] PaymentDeclined: card declined" in declined.logs
    assert again.worker_pid == declined.worker_pid and not again.cold_start


def test_a_result_that_is_not_json_is_a_marshal_error(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.return_a_datetime"))

    invocation = runtime.invoke("basic-return_a_datetime", b"{}")

    assert invocation.error_type == "Runtime.MarshalError"
    assert (
        answer(invocation)["errorMessage"]
        == "Unable to marshal response: Object of type datetime is not JSON serializable"
    )


def test_an_event_that_is_not_json_is_an_unmarshal_error(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.echo"))

    invocation = runtime.invoke("basic-echo", b"{not json")

    assert invocation.error_type == "Runtime.UnmarshalError"
    assert answer(invocation)["errorMessage"].startswith("Unable to unmarshal input: ")


def test_a_module_that_cannot_be_imported_fails_init_with_import_module_error(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("missing_dependency.handler"))

    invocation = runtime.invoke("missing_dependency-handler", b"{}")

    assert invocation.function_error == "Unhandled"
    assert invocation.cold_start
    assert answer(invocation) == {
        "errorMessage": (
            "Unable to import module 'missing_dependency': No module named 'a_package_that_is_not_installed'"
        ),
        "errorType": "Runtime.ImportModuleError",
        "requestId": "",
        "stackTrace": [],
    }
    assert invocation.worker_pid is not None and not process_running(invocation.worker_pid)
    assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'missing_dependency'" in invocation.logs


def test_a_missing_handler_attribute_is_handler_not_found(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.no_such_handler"))

    invocation = runtime.invoke("basic-no_such_handler", b"{}")

    assert invocation.error_type == "Runtime.HandlerNotFound"
    assert answer(invocation)["errorMessage"] == "Handler 'no_such_handler' missing on module 'basic'"


def test_an_exception_during_init_is_reported_by_its_class_name_and_the_next_event_retries_init(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("failing_init.handler"))

    first = runtime.invoke("failing_init-handler", b"{}")
    second = runtime.invoke("failing_init-handler", b"{}")

    error = answer(first)
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "DATABASE_URL is not set")
    assert any("failing_init.py" in frame for frame in error["stackTrace"])
    assert second.cold_start and second.worker_pid != first.worker_pid
    assert second.error_type == "RuntimeError"


def test_a_syntax_error_in_the_module_is_user_code_syntax_error(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text("def handler(event, context)\n    return 1\n")
    runtime.register(function("broken.handler", code_paths=[str(tmp_path)]))

    invocation = runtime.invoke("broken-handler", b"{}")

    assert invocation.error_type == "Runtime.UserCodeSyntaxError"
    assert re.match(r"Syntax error in module 'broken': ", answer(invocation)["errorMessage"])


def test_a_handler_name_without_a_module_is_malformed(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("handler", name="malformed"))

    invocation = runtime.invoke("malformed", b"{}")

    assert invocation.error_type == "Runtime.MalformedHandlerName"
    assert answer(invocation)["errorMessage"].startswith("Bad handler 'handler': ")
