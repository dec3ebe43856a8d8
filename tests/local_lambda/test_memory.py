"""Memory: the peak resident size is reported, and an environment that goes over MemorySize is killed."""

from __future__ import annotations

from collections.abc import Callable

from local_lambda import FunctionConfig
from tests.local_lambda.conftest import RecordingRuntime, answer, process_running

REQUEST_ID = "7f3c2a4e-0000-4000-8000-000000000002"


def test_going_over_the_memory_size_is_out_of_memory_and_the_environment_is_replaced(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    runtime.register(function("basic.allocate", memory_mb=128))
    warm_up = runtime.invoke("basic-allocate", b'{"mb": 1}')

    over = runtime.invoke("basic-allocate", b'{"mb": 200}', request_id=REQUEST_ID)
    after = runtime.invoke("basic-allocate", b'{"mb": 1}')

    assert over.function_error == "Unhandled"
    assert answer(over) == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {REQUEST_ID} Error: Runtime exited with error: signal: killed",
    }
    assert over.max_memory_mb > 128
    assert over.logs.endswith("\tStatus: error\tError Type: Runtime.OutOfMemory\t\n")
    assert over.worker_pid == warm_up.worker_pid
    assert over.worker_pid is not None and not process_running(over.worker_pid)
    assert after.cold_start and after.function_error is None
    assert answer(after) == 1024 * 1024
    assert after.max_memory_mb < 128
