"""Lambda, locally: run function invocations in worker processes that behave like Lambda execution environments.

Standard library only, so it also runs inside LocalStack's own virtualenv; nothing here imports project code.

    with LambdaRuntime([FunctionConfig("reserve", "functions.reserve.handler", ["."], timeout_seconds=10)]) as lambdas:
        try:
            invocation = lambdas.invoke("reserve", b'{"saga_id": "s-1"}')
        except LambdaServiceError as refused:  # throttled, or no such function
            raise botocore.exceptions.ClientError(refused.error_response(), "Invoke")
        # Invoke's answer: StatusCode 200, FunctionError = invocation.function_error, Payload = invocation.payload,
        # LogResult = base64 of the last 4 KB of invocation.logs.
"""

from local_lambda.config import FunctionConfig
from local_lambda.errors import FunctionNotFound, LambdaServiceError, TooManyRequests
from local_lambda.invocation import Invocation
from local_lambda.runtime import LambdaRuntime, LogSink

__all__ = [
    "FunctionConfig",
    "FunctionNotFound",
    "Invocation",
    "LambdaRuntime",
    "LambdaServiceError",
    "LogSink",
    "TooManyRequests",
]
