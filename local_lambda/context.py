"""The context object a handler receives, with the attributes Lambda's Python runtime gives it."""

from __future__ import annotations

import os
import time


class LambdaContext:
    """What ``context`` is inside a handler.

    As in Lambda's Python runtime, the function's name, version, memory size and log names are read from the
    environment (so ``memory_limit_in_mb`` is a string there too), and the remaining time counts down to the
    invocation's deadline on the wall clock.
    """

    def __init__(self, aws_request_id: str, invoked_function_arn: str, deadline_epoch_ms: int) -> None:
        self.aws_request_id = aws_request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = None
        self.identity = None
        self.tenant_id = None
        self._deadline_epoch_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops this invocation (never negative)."""
        return max(self._deadline_epoch_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name},"
            f"function_version={self.function_version},invoked_function_arn={self.invoked_function_arn}])"
        )
