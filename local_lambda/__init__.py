"""Lambda, locally: run function invocations in worker processes that behave like Lambda execution environments.

Standard library only, so it also runs inside LocalStack's own virtualenv; nothing here imports project code.
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
