"""What a handler sees: exactly the configured environment plus Lambda's variables, and a Lambda-like context."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest

from local_lambda import FunctionConfig
from tests.local_lambda.conftest import HANDLERS_DIR, RecordingRuntime, answer


def test_the_handler_sees_the_configured_variables_and_lambdas_own_and_nothing_else(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONLY_IN_THE_TEST_PROCESS", "leaked")
    config = function(
        "basic.environment",
        name="orders",
        timeout_seconds=30,
        memory_mb=512,
        environment={"TABLE_NAME": "orders", "POWERTOOLS_SERVICE_NAME": "sagas"},
        region="eu-west-1",
    )
    runtime.register(config)

    seen = answer(runtime.invoke("orders", b"{}"))

    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert {
        name: value for name, value in seen.items() if name not in {"PATH", "HOME", "AWS_LAMBDA_LOG_STREAM_NAME"}
    } == {
        "TABLE_NAME": "orders",
        "POWERTOOLS_SERVICE_NAME": "sagas",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{minor}",
        "LAMBDA_TASK_ROOT": str(HANDLERS_DIR),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": "basic.environment",
    }
    assert seen["PATH"] == os.environ["PATH"]
    assert "ONLY_IN_THE_TEST_PROCESS" not in seen
    assert seen["AWS_LAMBDA_LOG_STREAM_NAME"].split("/")[3].startswith("[$LATEST]")


def test_the_context_describes_the_function_and_counts_down_to_the_deadline(
    runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    arn = "arn:aws:lambda:eu-west-1:111122223333:function:orders"
    runtime.register(function("basic.context_and_remaining_time", name="orders", timeout_seconds=2, arn=arn))

    seen = answer(runtime.invoke("orders", b"{}", request_id="req-ctx"))

    first, second = seen.pop("remaining")
    assert 2000 >= first > second >= first - 1000
    assert second <= first - 150
    log_stream = seen.pop("log_stream_name")
    assert "[$LATEST]" in log_stream
    assert seen == {
        "function_name": "orders",
        "function_version": "$LATEST",
        "invoked_function_arn": arn,
        "memory_limit_in_mb": "256",
        "aws_request_id": "req-ctx",
        "log_group_name": "/aws/lambda/orders",
        "cwd": str(HANDLERS_DIR),
        "sys_path_head": [str(HANDLERS_DIR)],
    }
