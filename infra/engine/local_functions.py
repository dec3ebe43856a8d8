"""The template's functions as Lambda runs them, locally: each invocation in a worker process of `local_lambda`.

Timeout, MemorySize, ReservedConcurrentExecutions and Environment come from template.yaml (Globals, then the
function's own), with `!Ref` to a parameter read as the parameter's default. Locally the data stores are the
ones of this machine: DATABASE_URL and REDIS_URL replace the deployed connection settings, and
LOCAL_LAMBDA_TIMEOUT, when set, replaces every timeout.

moto runs a Task's Invoke through `LambdaFunction._invoke_lambda`; the engine points that here. A throttle is
raised as Lambda's Invoke API answers it (HTTP 429 TooManyRequestsException), which Step Functions names
`Lambda.TooManyRequestsException`; everything the function itself does wrong comes back in the payload under
the name the Lambda runtime gives it (`Sandbox.Timedout`, `Runtime.ExitError`, the exception's class name...).
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import JsonRESTError

from local_lambda import FunctionConfig, Invocation, LambdaRuntime, TooManyRequests
from local_lambda.runtime import DEFAULT_IDLE_SECONDS

ROOT_MARKER = "functions"
EARLIER_CONFIGURATIONS_KEPT = 1
"""A test that changes a setting (a timeout, a reserved concurrency) and changes it back finds the workers it had."""
LOCAL_ENVIRONMENT = {
    # The local PostgreSQL and Redis speak plain TCP; deployed, RDS Proxy requires TLS.
    "DATABASE_TLS": "false",
    # No X-Ray daemon runs here: traces would go to UDP 127.0.0.1:2000 and be lost, at the cost of a slower init.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "local",
    # A dummy that the local moto endpoint accepts, not a secret.
    "AWS_SECRET_ACCESS_KEY": "local",  # nosec B105
}
LogSink = Callable[[str, str], None]
HandlerFor = Callable[[str], str]


class ThrottledInvoke(JsonRESTError):
    """Lambda's Invoke answer to an invocation over the function's (or the account's) concurrency."""

    code = 429

    def __init__(self, refused: TooManyRequests) -> None:
        super().__init__("TooManyRequestsException", refused.message)
        self.description = json.dumps(
            {"Type": "User", "message": refused.message, "Reason": refused.reason, "__type": "TooManyRequestsException"}
        )


def discard_logs(function_name: str, text: str) -> None:
    """The default log sink: the tools that print a report of their own keep the functions' logs out of it."""


def print_logs(function_name: str, text: str) -> None:
    """Each invocation's log lines on stdout, as `sam local` shows them."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


@dataclass
class DuplicateDeliveries:
    """Delivers a share of the invocations twice, as at-least-once delivery may; counts what the second did."""

    rate: float
    rng: random.Random
    delivered_twice: int = 0
    absorbed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def twice(self) -> bool:
        with self.lock:
            return self.rng.random() < self.rate

    def record(self, first: tuple[str, bool], second: tuple[str, bool]) -> None:
        """The second delivery is absorbed when it answers as the first did: the same result (as JSON: a stored
        answer may list its keys in another order), or an error again."""
        absorbed = second[1] if first[1] else not second[1] and json.loads(first[0]) == json.loads(second[0])
        with self.lock:
            self.delivered_twice += 1
            self.absorbed += absorbed


def resolve_parameter_refs(
    value: Any,
    parameters: Mapping[str, Any],
    overrides: Mapping[str, str] | None = None,
    mappings: Mapping[str, Any] | None = None,
) -> str | None:
    """A template value as a plain string: literals as they are, `!Ref Param` as the parameter's override or its
    default, `!FindInMap` as the entry those name; None for anything that only exists once deployed (a resource's
    attribute, a parameter with neither)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if overrides and value["Ref"] in overrides:
            return overrides[value["Ref"]]
        default = parameters.get(value["Ref"], {}).get("Default")
        return None if default is None else str(default)
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"} and mappings:
        keys = [resolve_parameter_refs(part, parameters, overrides, mappings) for part in value["Fn::FindInMap"]]
        entry: Any = mappings
        for key in keys:
            entry = entry.get(key) if isinstance(entry, Mapping) and key is not None else None
        return resolve_parameter_refs(entry, parameters) if entry is not None else None
    return None


def function_settings(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """The function's properties with the template's Globals under them, as SAM merges them."""
    merged = dict(template.get("Globals", {}).get("Function", {}))
    own = template["Resources"][logical_id]["Properties"]
    environment = {
        **merged.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    return {**merged, **own, "EnvironmentVariables": environment}


def function_config(
    template: dict[str, Any],
    logical_id: str,
    root: str,
    local_environment: Mapping[str, str],
    timeout_override: float | None,
    handler_for: HandlerFor | None,
    parameter_overrides: Mapping[str, str] | None = None,
    snap_start: bool = True,
) -> FunctionConfig:
    """The function as Lambda would run it, from the template (`parameter_overrides` as `sam local` takes them);
    `snap_start=False` runs even a SnapStart function's cold starts on demand."""
    parameters = template.get("Parameters", {})
    settings = function_settings(template, logical_id)

    def resolve(value: Any) -> str | None:
        return resolve_parameter_refs(value, parameters, parameter_overrides, template.get("Mappings", {}))

    environment = {
        name: resolved
        for name, value in settings["EnvironmentVariables"].items()
        if (resolved := resolve(value)) is not None
    }
    reserved = settings.get("ReservedConcurrentExecutions")
    reserved_value = resolve(reserved) if reserved is not None else None
    handler = str(settings["Handler"])
    return FunctionConfig(
        name=logical_id,
        handler=handler_for(handler) if handler_for else handler,
        code_paths=[root],
        timeout_seconds=timeout_override or float(resolve(settings.get("Timeout", 3)) or 3),
        memory_mb=int(resolve(settings.get("MemorySize", 128)) or 128),
        reserved_concurrency=None if reserved_value is None else int(reserved_value),
        environment={**environment, **LOCAL_ENVIRONMENT, **local_environment},
        region=str(local_environment.get("AWS_DEFAULT_REGION", "us-east-1")),
        snap_start=snap_start and settings.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions",
    )


@dataclass(frozen=True)
class Configuration:
    """What the engine decides about every function, read before each invocation."""

    environment: dict[str, str]
    timeout_override: float | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)


class LocalFunctions:
    """The template's functions on worker processes. `configuration()` is read before every invocation, and a
    change (another database, faults allowed or not, another timeout) replaces the functions' workers, as a
    configuration update does on Lambda. The workers of the configuration before are kept aside, as a published
    version's warm environments are, and serve again if it comes back."""

    def __init__(
        self,
        template: dict[str, Any],
        root: str,
        configuration: Callable[[], Configuration],
        handler_for: HandlerFor | None = None,
        log_sink: LogSink = discard_logs,
        duplicates: DuplicateDeliveries | None = None,
        snap_start: bool = True,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self._template = template
        self._snap_start = snap_start
        self._root = root
        self._configuration = configuration
        self._handler_for = handler_for
        self._duplicates = duplicates
        self._lock = threading.Lock()
        self._registered: Configuration | None = None
        self.logical_ids = [
            logical_id
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function" and _runs_locally(resource)
        ]
        self.runtime = LambdaRuntime(
            log_sink=log_sink, earlier_configurations_kept=EARLIER_CONFIGURATIONS_KEPT, idle_seconds=idle_seconds
        )

    def close(self) -> None:
        self.runtime.shutdown()

    def config(self, logical_id: str, configuration: Configuration | None = None) -> FunctionConfig:
        configuration = configuration or self._configuration()
        return function_config(
            self._template,
            logical_id,
            self._root,
            configuration.environment,
            configuration.timeout_override,
            self._handler_for,
            configuration.parameter_overrides,
            self._snap_start,
        )

    def invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        """moto's `_invoke_lambda`: (payload, errored, logs) of one invocation, or ThrottledInvoke."""
        payload = event if isinstance(event, (str, bytes)) else json.dumps(event if event is not None else {})
        body = payload.encode() if isinstance(payload, str) else payload
        first = self._invoke_once(function_name, body)
        if self._duplicates is not None and self._duplicates.twice():
            second = self._invoke_once(function_name, body)
            self._duplicates.record(first[:2], second[:2])
        return first

    def run(self, function_name: str, body: bytes) -> Invocation:
        """One invocation, with the configuration of the moment (TooManyRequests when throttled)."""
        self._register_if_changed()
        return self.runtime.invoke(function_name, body)

    def _invoke_once(self, function_name: str, body: bytes) -> tuple[str, bool, str]:
        try:
            invocation = self.run(function_name, body)
        except TooManyRequests as refused:
            raise ThrottledInvoke(refused) from None
        return invocation.payload.decode(), invocation.function_error is not None, invocation.logs

    def _register_if_changed(self) -> None:
        configuration = self._configuration()
        with self._lock:
            if configuration == self._registered:
                return
            for logical_id in self.logical_ids:
                self.runtime.register(self.config(logical_id, configuration))
            self._registered = configuration


def _runs_locally(resource: dict[str, Any]) -> bool:
    """The API function is chalice's (app.app), served by `make run` in process, not invoked by a Task."""
    return str(resource["Properties"].get("Handler", "")).startswith(f"{ROOT_MARKER}.")
