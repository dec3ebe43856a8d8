"""The error names and messages Lambda reports, and the throttle/lookup errors its Invoke API raises.

Two kinds of failure reach a caller of Lambda's Invoke API, and Step Functions treats them differently:

* A **function error**: Invoke answers 200 with the header ``X-Amz-Function-Error: Unhandled`` and an error
  object ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` as the payload. moto's (and LocalStack's)
  Step Functions interpreter passes ``errorType`` through as the state's error name
  (``state_task_service_lambda.py``, ``_from_error``: ``CustomErrorName(cause_object["errorType"])``), so a
  ``Catch`` on ``Sandbox.Timedout`` or on a handler's own exception class name matches.
  Step Functions' guide says unhandled errors, "out-of-memory errors and function timeouts" among them,
  also match ``Lambda.Unknown``/``States.TaskFailed``/``States.ALL``:
  https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
* A **service error**: Invoke itself fails (a ``ClientError``). The interpreter names the state's error
  ``Lambda.<Code>`` (``_error_cause_from_client_error``), e.g. ``Lambda.TooManyRequestsException``, which the
  same Step Functions page names for "when Lambda hits the maximum number of invocations".

Sources, per name:

* ``Runtime.ImportModuleError`` "Unable to import module '<m>': <e>", ``Runtime.HandlerNotFound``
  "Handler '<f>' missing on module '<m>'", ``Runtime.UserCodeSyntaxError`` "Syntax error in module '<m>': <e>",
  ``Runtime.MalformedHandlerName`` "Bad handler '<h>': <e>", ``Runtime.BuiltInModuleConflict``,
  ``Runtime.MarshalError`` "Unable to marshal response: <e>", ``Runtime.UnmarshalError``
  "Unable to unmarshal input: <e>"; any other exception at init or in the handler reports its class name and
  ``str(exception)`` with a ``stackTrace`` list, and init errors carry ``"requestId": ""``. All from the Python
  runtime interface client that Lambda's managed Python runtimes run:
  https://github.com/aws/aws-lambda-python-runtime-interface-client/blob/main/awslambdaric/bootstrap.py
  https://github.com/aws/aws-lambda-python-runtime-interface-client/blob/main/awslambdaric/lambda_runtime_exception.py
  https://github.com/aws/aws-lambda-python-runtime-interface-client/blob/main/awslambdaric/lambda_runtime_marshaller.py
  The error object's fields: https://docs.aws.amazon.com/lambda/latest/api/API_ErrorObject.html
* ``Sandbox.Timedout`` "RequestId: <id> Error: Task timed out after 3.00 seconds": the error type is named in
  https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html ("Function times out during Init
  phase (Sandbox.Timedout)"); the seconds are the configured timeout, not the measured duration (the timeout example
  in https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html, "Failures during the invoke
  phase": Duration 3004.92 ms, "Task timed out after 3.00 seconds"); the payload's wording is what Invoke returns,
  as quoted from the console in many public write-ups (no AWS page prints the payload).
* ``Runtime.ExitError`` "RequestId: <id> Error: Runtime exited with error: exit status 129" / "... signal: killed":
  https://repost.aws/knowledge-center/lambda-runtime-error (the wording is Go's ``os.ProcessState`` string, so
  other signals read "signal: segmentation fault", "signal: aborted", ...; Go has no error for a status 0 exit,
  and Lambda's log then says "Error: Runtime exited without providing a reason", as in the crash example of
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
* ``Runtime.OutOfMemory``: the error type Lambda reports for an environment killed over its MemorySize. No AWS
  page I could find names it; it is the ``errorType`` of the Telemetry API's ``platform.report`` record for such an
  invocation (``"status": "error", "errorType": "Runtime.OutOfMemory"``; the record's schema:
  https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html) and what Invoke answers, as quoted
  in public projects' runbooks. Its message is not documented; the kill is a SIGKILL, so we use the ExitError
  wording "RequestId: <id> Error: Runtime exited with error: signal: killed", which the function's log shows.
* ``TooManyRequestsException`` (HTTP 429, ``Type`` "User", message "Rate Exceeded.") with ``Reason``
  ``ReservedFunctionConcurrentInvocationLimitExceeded`` (over the function's reserved concurrency) or
  ``ConcurrentInvocationLimitExceeded`` (over the account's): https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
  and the exception's shape in botocore:
  https://docs.aws.amazon.com/botocore/latest/reference/services/lambda/client/exceptions/TooManyRequestsException.html
* ``ResourceNotFoundException`` (HTTP 404) "Function not found: <arn>": https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
"""

from __future__ import annotations

import signal
from typing import Any

UNHANDLED = "Unhandled"
"""The value of Invoke's ``X-Amz-Function-Error`` header (``FunctionError``) for every error reported here."""

IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
SANDBOX_TIMEDOUT = "Sandbox.Timedout"
RUNTIME_EXIT_ERROR = "Runtime.ExitError"
RUNTIME_OUT_OF_MEMORY = "Runtime.OutOfMemory"

TOO_MANY_REQUESTS = "TooManyRequestsException"
RESERVED_CONCURRENCY_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_CONCURRENCY_EXCEEDED = "ConcurrentInvocationLimitExceeded"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"


def error_object(
    error_type: str, message: str, request_id: str = "", stack_trace: list[str] | None = None
) -> dict[str, Any]:
    """The error object Lambda returns as the payload of a failed invocation (key order as the runtime writes it)."""
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack_trace or []}


def platform_error_object(error_type: str, message: str) -> dict[str, Any]:
    """An error Lambda itself reports (timeout, exit, out of memory): only a type and a message, no trace."""
    return {"errorType": error_type, "errorMessage": message}


def timeout_message(request_id: str, timeout_seconds: float) -> str:
    """``RequestId: <id> Error: Task timed out after 3.00 seconds``."""
    return f"RequestId: {request_id} Error: Task timed out after {timeout_seconds:.2f} seconds"


def exit_message(request_id: str, returncode: int) -> str:
    """``RequestId: <id> Error: Runtime exited with error: exit status 3`` (or ``signal: killed`` for SIGKILL).

    A runtime that exits with status 0 has no error to quote: Lambda says it "exited without providing a reason".
    """
    if returncode == 0:
        return f"RequestId: {request_id} Error: Runtime exited without providing a reason"
    return f"RequestId: {request_id} Error: Runtime exited with error: {describe_exit(returncode)}"


def describe_exit(returncode: int) -> str:
    """A process's end as Go's ``os.ProcessState`` prints it: ``exit status 3``, ``signal: killed``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    signal_number = -returncode
    try:
        name = signal.strsignal(signal_number)
    except ValueError:
        name = None
    return f"signal: {name.lower()}" if name else f"signal: {signal_number}"


class LambdaServiceError(Exception):
    """Invoke itself failed: Lambda's API answered an error instead of running the function.

    ``error_response()`` gives the dict botocore parses such an answer into, so a caller that fakes the Lambda
    client (moto, a LocalStack plugin) can raise ``botocore.exceptions.ClientError(err.error_response(), "Invoke")``
    and Step Functions names the failure ``Lambda.<code>``.
    """

    code: str = "ServiceException"
    status_code: int = 500

    def __init__(self, message: str, function_name: str) -> None:
        super().__init__(message)
        self.message = message
        self.function_name = function_name

    def error_response(self) -> dict[str, Any]:
        """The parsed error response, as botocore would build it from Lambda's HTTP answer."""
        return {
            "Error": {"Code": self.code, "Message": self.message},
            "Type": "User",
            "message": self.message,
            "ResponseMetadata": {"HTTPStatusCode": self.status_code, "RequestId": ""},
        }


class TooManyRequests(LambdaServiceError):
    """Invoke was throttled: the function's reserved concurrency, or the account's, is all in flight."""

    code = TOO_MANY_REQUESTS
    status_code = 429

    def __init__(self, function_name: str, reason: str) -> None:
        super().__init__("Rate Exceeded.", function_name)
        self.reason = reason

    def error_response(self) -> dict[str, Any]:
        """The parsed error response, with Lambda's throttle ``Reason``."""
        return {**super().error_response(), "Reason": self.reason}


class FunctionNotFound(LambdaServiceError):
    """Invoke named a function that was never registered."""

    code = RESOURCE_NOT_FOUND
    status_code = 404

    def __init__(self, function_name: str, arn: str) -> None:
        super().__init__(f"Function not found: {arn}", function_name)
