"""A LocalStack execution environment as one local_lambda worker process on this machine (no Docker).

LocalStack's Lambda service decides when an environment starts, which invocation it serves (one at a time) and
when it stops; this executor is the environment. The docker executor reaches its container over HTTP (LocalStack
POSTs `/invoke`, the runtime answers on `/_localstack_lambda/<id>/...`) because the runtime lives across a
container boundary. Here the worker is a child of LocalStack's own process, so `invoke` exchanges frames with it
directly and returns the `InvocationResult` that the HTTP callbacks would have produced: the payload, whether it
is an error, and the invocation's log lines.

The worker runs the function's code on the interpreter named for the function's runtime by `LOCAL_LAMBDA_<RUNTIME>`
(`LOCAL_LAMBDA_PYTHON3_12=/path/to/python3.12`), which must match the wheels in the zip. The code runs from one
folder per distinct zip, unzipped and byte-compiled once when the first version using it is prepared: every
function of a stack ships the same zip, and without bytecode a cold start compiles every module it imports (10 to
20 s here under load, past the functions' 10 s timeout; 3 to 4 s with it).

Timeouts, crashes and memory over the limit are local_lambda's (`Sandbox.Timedout`, `Runtime.ExitError`, ...): the
worker is killed, and since LocalStack keeps such an environment for the next invocation, that invocation starts
a fresh worker, a cold start, as Lambda would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess  # nosec B404
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localstack import config as localstack_config
from localstack.services.lambda_.invocation.executor_endpoint import NAMESPACE
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

from local_lambda.config import FunctionConfig
from local_lambda.execution import run_cold, run_warm
from local_lambda.runtime import INIT_TIMEOUT_SECONDS
from local_lambda.worker_process import WorkerProcess

LOOPBACK = "127.0.0.1"
LAMBDA_OWN_VARIABLES = frozenset({"LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER"})
"""Set by local_lambda from the function's code folder and handler, not from LocalStack's container layout."""

# Workers start from these long-lived threads: a worker's parent-death signal fires when the thread that started it
# ends, and LocalStack starts environments from threads that come and go.
_SPAWNER = ThreadPoolExecutor(4, thread_name_prefix="local-lambda-spawn")
_CODE_LOCK = threading.Lock()
COMPILED_MARKER = ".local-lambda-compiled"


def interpreter_for(runtime: str) -> str:
    """The Python that runs `runtime` (`python3.12`): `LOCAL_LAMBDA_PYTHON3_12`; an error if none is named."""
    variable = "LOCAL_LAMBDA_" + runtime.upper().replace(".", "_")
    interpreter = os.environ.get(variable, "")
    if not interpreter or not Path(interpreter).is_file():
        raise LambdaRuntimeException(
            f"no interpreter for the runtime {runtime!r}: set {variable} to a {runtime} executable "
            "(the wheels in the deployment zip are built for it)"
        )
    return interpreter


def code_folder(code: Any) -> Path:
    """Where functions whose zip has `code`'s SHA-256 run from (see the module's docstring)."""
    digest = hashlib.sha256(code.code_sha256.encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "local-lambda" / digest


def prepare_code_folder(code: Any, interpreter: str) -> Path:
    """`code_folder(code)`, unzipped (by LocalStack, then copied) and byte-compiled by `interpreter`, once."""
    folder = code_folder(code)
    with _CODE_LOCK:
        if (folder / COMPILED_MARKER).is_file():
            return folder
        code.prepare_for_execution()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(code.get_unzipped_code_location(), folder)
        subprocess.run(  # noqa: S603  # nosec B603 - the runtime's interpreter on our own folder
            [interpreter, "-m", "compileall", "-q", "-j", "0", str(folder)], check=False, capture_output=True
        )
        (folder / COMPILED_MARKER).touch()
    return folder


class LocalLambdaRuntimeExecutor(RuntimeExecutor):  # type: ignore[misc]  # localstack is untyped here
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        self._config: FunctionConfig | None = None
        self._worker: WorkerProcess | None = None
        self._initialised = False
        self._logs: list[str] = []
        self._lock = threading.Lock()

    def start(self, env_vars: dict[str, Any]) -> None:
        function = self.function_version.config
        interpreter = interpreter_for(function.runtime)
        self._config = FunctionConfig(
            name=self.function_version.id.function_name,
            handler=function.handler,
            code_paths=[str(prepare_code_folder(function.code, interpreter))],
            timeout_seconds=float(function.timeout),
            memory_mb=int(function.memory_size),
            environment={k: str(v) for k, v in env_vars.items() if k not in LAMBDA_OWN_VARIABLES},
            python=interpreter,
            arn=self.function_version.qualified_arn,
            region=self.function_version.id.region,
        )
        with self._lock:
            self._worker = self._start_worker(self._config)

    def stop(self) -> None:
        busy = self._worker
        if busy is not None:
            # Killed first, without waiting for an invocation in flight: it sees its worker exit and ends.
            busy.kill()
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        if self._config is None:
            raise LambdaRuntimeException(f"execution environment {self.id} was not started")
        request_id = payload["invoke-id"]
        config = dataclasses.replace(self._config, arn=payload.get("invoked-function-arn") or self._config.arn)
        event = payload["payload"].encode()
        with self._lock:
            worker = self._worker
            if worker is None or not worker.alive():
                worker = self._worker = self._start_worker(config)
            if self._initialised:
                invocation, reusable = run_warm(worker, config, event, request_id)
            else:
                invocation, reusable = run_cold(worker, config, event, request_id, INIT_TIMEOUT_SECONDS)
            self._initialised = reusable
            if not reusable:
                worker.close()
                self._worker = None
        self._logs.append(invocation.logs)
        return InvocationResult(
            request_id, invocation.payload, is_error=invocation.function_error is not None, logs=invocation.logs
        )

    def _start_worker(self, config: FunctionConfig) -> WorkerProcess:
        self._initialised = False
        return _SPAWNER.submit(WorkerProcess.start, config).result()

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        return LOOPBACK

    def get_runtime_endpoint(self) -> str:
        port = localstack_config.GATEWAY_LISTEN[0].port
        return f"http://{LOOPBACK}:{port}{NAMESPACE}/{self.id}"

    def get_logs(self) -> str:
        return "".join(self._logs)

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        interpreter = interpreter_for(function_version.config.runtime)
        if function_version.config.code:
            prepare_code_folder(function_version.config.code, interpreter)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """The code folder stays: other versions may share it (it lives in LocalStack's TMPDIR)."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True
