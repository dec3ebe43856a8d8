"""Reserved and account concurrency: over the limit, Invoke is refused at once with Lambda's throttle error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from local_lambda import FunctionConfig, Invocation, TooManyRequests
from tests.local_lambda.conftest import RecordingRuntime, wait_until


class HeldInvocations:
    """Invocations of basic.wait_for_release held in flight, each on its own thread, until released."""

    def __init__(self, runtime: RecordingRuntime, name: str, tmp_path: Path) -> None:
        self._runtime = runtime
        self._name = name
        self._started_dir = tmp_path / "started"
        self._started_dir.mkdir()
        self._release = tmp_path / "release"
        self.results: list[Invocation] = []
        self._threads: list[threading.Thread] = []

    @property
    def event(self) -> bytes:
        return json.dumps({"started_dir": str(self._started_dir), "release_file": str(self._release)}).encode()

    def hold(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=lambda: self.results.append(self._runtime.invoke(self._name, self.event)))
            thread.start()
            self._threads.append(thread)
        wait_until(lambda: len(list(self._started_dir.iterdir())) == len(self._threads))

    def release(self) -> None:
        self._release.touch()
        for thread in self._threads:
            thread.join(timeout=30)


def test_over_the_reserved_concurrency_invoke_is_throttled_at_once_and_works_again_after(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    runtime.register(function("basic.wait_for_release", name="held", reserved_concurrency=2))
    held = HeldInvocations(runtime, "held", tmp_path)
    held.hold(2)

    started = time.monotonic()
    with pytest.raises(TooManyRequests) as throttled:
        runtime.invoke("held", held.event)
    refused_after = time.monotonic() - started
    held.release()

    assert refused_after < 1.0
    assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert throttled.value.error_response() == {
        "Error": {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."},
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "Type": "User",
        "message": "Rate Exceeded.",
        "ResponseMetadata": {"HTTPStatusCode": 429, "RequestId": ""},
    }
    assert [result.function_error for result in held.results] == [None, None]
    assert runtime.invoke("held", held.event).function_error is None


def test_a_reserved_concurrency_of_zero_throttles_every_invoke(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.echo", reserved_concurrency=0))

    with pytest.raises(TooManyRequests) as throttled:
        runtime.invoke("basic-echo", b"{}")

    assert throttled.value.code == "TooManyRequestsException"
    assert throttled.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_over_the_account_concurrency_any_function_is_throttled(
    function: Callable[..., FunctionConfig], tmp_path: Path
) -> None:
    with RecordingRuntime(max_concurrency=1) as runtime:
        runtime.register(function("basic.wait_for_release", name="held"))
        runtime.register(function("basic.echo"))
        held = HeldInvocations(runtime, "held", tmp_path)
        held.hold(1)

        with pytest.raises(TooManyRequests) as throttled:
            runtime.invoke("basic-echo", b"{}")
        held.release()

        assert throttled.value.reason == "ConcurrentInvocationLimitExceeded"
        assert runtime.invoke("basic-echo", b"{}").function_error is None


def test_an_unknown_function_is_not_found(runtime: RecordingRuntime) -> None:
    from local_lambda import FunctionNotFound

    with pytest.raises(FunctionNotFound) as not_found:
        runtime.invoke("nope", b"{}")

    assert not_found.value.error_response()["Error"] == {
        "Code": "ResourceNotFoundException",
        "Message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope",
    }
