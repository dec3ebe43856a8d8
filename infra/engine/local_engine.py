"""Local engine: the stack of template.yaml on moto's Step Functions interpreter, each step in a worker process.

moto cannot run a Lambda's code without Docker, so this module replaces the one method moto uses to run
it (`LambdaFunction._invoke_lambda`) with an invocation on `local_lambda`'s worker processes, which behave as
Lambda's execution environments do (infra/engine/local_functions.py). That method is internal to moto: this module is
written against MOTO_VERSION and refuses to start on another.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import moto
import yaml
from moto.awslambda.models import LambdaFunction
from moto.core import config as moto_config
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from chalicelib.adapters import idempotency, payment_provider, saga_cache, step_functions
from chalicelib.settings import database_engine, get_settings
from infra.engine.definition_digest import SUBSTITUTION as DIGEST_SUBSTITUTION
from infra.engine.definition_digest import UNPACKAGED, definition_digest
from infra.engine.embedded_redis import embedded_redis
from infra.engine.local_functions import (
    Configuration,
    DuplicateDeliveries,
    HandlerFor,
    LocalFunctions,
    LogSink,
    discard_logs,
)
from local_lambda.runtime import DEFAULT_IDLE_SECONDS
from payment_provider.launcher import RunningProvider, start_provider

MOTO_VERSION = "5.2.5"
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
STATE_MACHINE_SETTINGS = {
    "PurchaseSagaStateMachine": "purchase_state_machine_arn",
    "ReturnSagaStateMachine": "return_state_machine_arn",
}
FINAL_EXECUTION_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
ALIAS_REF = ".Alias"
"""`!Ref <Function>.Alias`: SAM's name for the alias AutoPublishAlias publishes."""
THROTTLE = "Lambda.TooManyRequestsException"
_retrier = threading.local()
"""The retrier whose wait the interpreter's thread is about to sleep: each execution runs on a thread of its own."""


class _TemplateLoader(yaml.CSafeLoader):
    """Reads CloudFormation short-form tags (`!GetAtt X.Arn`, `!Ref X`) as {'Fn::GetAtt': ...} values. libyaml's
    parser: the pure-Python one took 90 ms of each engine start per read of the template."""


def _intrinsic(loader: yaml.CSafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)  # type: ignore[arg-type]
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    # _TemplateLoader is a SafeLoader: it builds plain data and CloudFormation tags, never objects.
    return dict(yaml.load(path.read_text(), Loader=_TemplateLoader))  # noqa: S506  # nosec


def state_machine_definition(properties: dict[str, Any], resolve: Callable[[Any], str], root: Path = ROOT) -> str:
    """A state machine's ASL with its `DefinitionSubstitutions` filled in, as CloudFormation does on deploy; the
    definition's digest where template.yaml leaves it to `make package` (infra/engine/definition_digest.py)."""
    path = root / properties["DefinitionUri"]
    definition: str = path.read_text()
    for key, value in properties.get("DefinitionSubstitutions", {}).items():
        text = definition_digest(path) if key == DIGEST_SUBSTITUTION and value == UNPACKAGED else resolve(value)
        definition = definition.replace(f"${{{key}}}", text)
    return definition


_preprocessor_init = Preprocessor.__init__


@cache
def _template_timeout() -> float:
    """The steps' timeout as deployed (template.yaml's Globals)."""
    return float(load_template()["Globals"]["Function"]["Timeout"])


_retrier_eval_body = RetrierDecl._eval_body


def _retrier_that_names_its_errors(self: RetrierDecl, env: Any) -> None:
    """moto's retrier sleeps without saying for which errors; the engine scales a throttle's wait on its own."""
    names = {getattr(name, "error_name", name) for name in self.error_equals.error_names}
    _retrier.throttle = THROTTLE in names
    try:
        _retrier_eval_body(self, env)
    finally:
        _retrier.throttle = False


def _scaled_wait(scale: Callable[[], float]) -> Callable[[WaitFunction, Any], None]:
    """A Wait state sleeps its seconds times the engine's scale. moto's own wait re-enters for the remainder in
    whole seconds, which never ends for a scaled fraction of a second, so the wait is redone here."""

    def wait(self: WaitFunction, env: Any) -> None:
        deadline = time.monotonic() + self._get_wait_seconds(env=env) * scale()
        while env.is_running() and (left := deadline - time.monotonic()) > 0:
            env.program_state_event.wait(left)

    return wait


def _telling(listener: Callable[[str], None]) -> Callable[[BaseExecutionWorkerCommunication], None]:
    """moto's end of an execution (its status and stop date set), then ``listener`` told the execution's ARN."""
    terminated = BaseExecutionWorkerCommunication.terminated

    def terminated_and_told(communication: BaseExecutionWorkerCommunication) -> None:
        terminated(communication)
        listener(communication.execution.exec_arn)

    return terminated_and_told


def _preprocessor_with_its_own_scopes(self: Preprocessor, *args: Any, **kwargs: Any) -> None:
    """moto 5.2.5's ASL preprocessor keeps its query-language scopes in a list shared by the class, and every
    execution parses its definition on its own thread: two parses at once corrupt it, and the execution's thread
    dies with an IndexError, leaving the execution RUNNING forever (seen once in a 1,000-saga soak)."""
    _preprocessor_init(self, *args, **kwargs)
    self._query_language_per_scope = []


def _program_from_a_kept_syntax_tree(self: ExecutionWorker) -> EvalComponent:
    """moto parses the definition again for every execution: tens of milliseconds of the interpreter's lock, a
    fifth of a saga's own. The syntax tree is kept per definition; each execution still gets its own components."""
    program: EvalComponent = Preprocessor().visit(
        _syntax_tree(self._evaluation_details.state_machine_details.definition)
    )
    return program


@lru_cache(maxsize=64)
def _syntax_tree(definition: str) -> Any:
    """The ANTLR parse tree of the definition (antlr4 has no type stubs)."""
    return AmazonStateLanguageParser.parse(definition)[1]


@dataclass
class LocalEngine:
    """`with LocalEngine() as engine:` deploys template.yaml to an in-process moto and runs sagas on it.

    `retry_wait_scale` shortens the interpreter's Retry waits and Wait states (0.01 makes a 2 s wait 20 ms) so
    tests and the demo do not sleep through backoff; the definitions themselves are deployed unchanged.
    LOCAL_TIME_SCALE, when set, takes its place, whatever the tool chose.

    Local time is scaled consistently where two clocks meet: a throttle retrier's waits exist to outlast the
    attempts that hold the function's reserved slots, each for up to the function's timeout (a `timeout` fault
    hangs until it). So a throttle's waits shrink by the factor the timeouts shrank (`slot_scale`: a 2 s local
    timeout for the template's 10 s is 0.2), never by `retry_wait_scale`: shrunk 50-fold against slots held at
    their full timeout, 12 throttle retries once lasted a second while an attempt held its slot for ten, and valid
    purchases were compensated (issue 23). The other waits cover causes that do not hold a slot (a provider's
    503, a dropped connection) and keep `retry_wait_scale`. The timeouts themselves are never shrunk below what a
    step's real work takes on a loaded machine, so the budget is checked at the deployed ratio
    (infra/engine/throttle_budget.py) and kept locally at that ratio.
    """

    retry_wait_scale: float = 1.0
    throttle_wait_scale: float | None = None
    """None: `slot_scale`, consistent with the timeouts. A test that must outlast the budget sets it smaller."""
    endpoint_port: int | None = None
    """None: an in-process mock with no endpoint (tests). A port (0: any free one): a moto server on
    127.0.0.1 there, which boto3 clients and the AWS CLI can reach at `endpoint_url`."""
    endpoint_url: str | None = None
    handler_for: HandlerFor | None = None
    """Maps a function's `Handler` (module.attribute) to the one its workers load; None loads the real one.
    The benchmarks load no-op handlers here to measure the engine's own cost."""
    reuse_lambda_client: bool = True
    """moto's interpreter builds a boto3 Lambda client for every Task (~8 ms); reuse one per region."""
    log_sink: LogSink = discard_logs
    """Where each invocation's log lines (START, the function's JSON lines, END, REPORT) go."""
    duplicates: DuplicateDeliveries | None = None
    """Deliver a share of the invocations twice (the soak), as at-least-once delivery may."""
    snap_start: bool = True
    """SnapStart as the template declares it (each configuration initialised once, cold starts restored from its
    snapshot); False starts every cold start on demand, as `$LATEST` does."""
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    """How long an idle execution environment is kept (and its database connection open) before it is reclaimed;
    Lambda decides that on its own, in minutes."""
    extra_environment: dict[str, str] = field(default_factory=dict)
    """More variables for every function. This and the two below are read at each invocation: a change replaces
    the functions' workers, as a configuration update does on Lambda."""
    function_timeout: float | None = None
    """Every function's timeout in seconds instead of the template's; None: LOCAL_LAMBDA_TIMEOUT, if set."""
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    """Template parameters, as `sam local --parameter-overrides` takes them (say PaymentConcurrency)."""
    functions: LocalFunctions | None = None
    provider_port: int = 0
    """Where the payment provider the engine starts listens (0: any free port); none starts when
    PAYMENT_PROVIDER_URL is set."""
    provider_database_url: str | None = None
    """The provider's own store; None: PROVIDER_DATABASE_URL, else the payment_provider schema when DATABASE_URL is
    PostgreSQL, else its SQLite file in .local/."""
    provider_environment: dict[str, str] = field(default_factory=dict)
    """More settings for the provider (REFUND_SETTLE_SECONDS, PROVIDER_FAULT_RATE...)."""
    provider: RunningProvider | None = None
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    function_arns: dict[str, str] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)
    _ended: threading.Condition = field(default_factory=threading.Condition)
    _ended_arns: set[str] = field(default_factory=set)

    def __enter__(self) -> LocalEngine:
        if moto.__version__ != MOTO_VERSION:
            raise RuntimeError(
                f"infra/engine/local_engine.py patches moto {MOTO_VERSION} internals; moto {moto.__version__} is "
                "installed (pip install -r requirements-dev.txt)"
            )
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        self._stack.enter_context(mock.patch.dict(os.environ))  # restored as it was on exit
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
        os.environ.pop("AWS_ENDPOINT_URL", None)  # moto's mock intercepts only the default endpoints
        if self.endpoint_port is None:
            self._stack.enter_context(moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        else:
            self._serve_endpoint(self.endpoint_port)
        self.functions = LocalFunctions(
            load_template(),
            str(ROOT),
            self.function_configuration,
            handler_for=self.handler_for,
            log_sink=lambda function_name, text: self.log_sink(function_name, text),  # swappable while it runs
            duplicates=self.duplicates,
            snap_start=self.snap_start,
            idle_seconds=self.idle_seconds,
        )
        self._stack.callback(self.functions.close)
        functions = self.functions
        self._stack.enter_context(
            mock.patch.object(
                LambdaFunction, "_invoke_lambda", lambda fn, event=None: functions.invoke(fn.function_name, event)
            )
        )
        self._stack.enter_context(mock.patch.object(Preprocessor, "__init__", _preprocessor_with_its_own_scopes))
        self._stack.enter_context(
            mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", _program_from_a_kept_syntax_tree)
        )
        self._stack.enter_context(
            mock.patch.object(BaseExecutionWorkerCommunication, "terminated", _telling(self._heard_the_end_of))
        )
        if self.reuse_lambda_client:
            clients: dict[tuple[str, str], Any] = {}
            build = lambda_eval_utils.boto_client_for  # type: ignore[attr-defined]

            def reused(region: str, service: str, state_credentials: Any = None) -> Any:
                key = (region, service)
                if key not in clients:
                    clients[key] = build(region, service, state_credentials)
                return clients[key]

            self._stack.enter_context(mock.patch.object(lambda_eval_utils, "boto_client_for", reused))
        scaled = SimpleNamespace(sleep=lambda seconds: time.sleep(seconds * self.wait_scale()))
        self._stack.enter_context(mock.patch.object(retrier_decl, "time", scaled))
        self._stack.enter_context(mock.patch.object(RetrierDecl, "_eval_body", _retrier_that_names_its_errors))
        self._stack.enter_context(mock.patch.object(WaitFunction, "_eval_body", _scaled_wait(self.time_scale)))
        settings = get_settings()
        for attribute in ("aws_endpoint_url", *STATE_MACHINE_SETTINGS.values()):
            self._stack.enter_context(mock.patch.object(settings, attribute, getattr(settings, attribute)))
        settings.aws_endpoint_url = self.endpoint_url
        self._use_embedded_redis_unless_configured()
        self._start_payment_provider_unless_configured()
        self._stack.callback(step_functions.reset_client)
        step_functions.reset_client()
        self._deploy(load_template())

    def function_configuration(self) -> Configuration:
        timeout = self.function_timeout or get_settings().local_lambda_timeout
        return Configuration(self.function_environment(), timeout, dict(self.parameter_overrides))

    def slot_scale(self) -> float:
        """How much shorter than the template's the steps' timeouts are here: the time an attempt can hold a slot."""
        timeout = self.function_timeout or get_settings().local_lambda_timeout
        return timeout / _template_timeout() if timeout else 1.0

    def time_scale(self) -> float:
        """The scale of local time: LOCAL_TIME_SCALE when set, else the tool's own `retry_wait_scale`."""
        configured = get_settings().local_time_scale
        return self.retry_wait_scale if configured is None else configured

    def wait_scale(self) -> float:
        """The scale of the Retry wait the interpreter's thread is about to sleep."""
        if not getattr(_retrier, "throttle", False):
            return self.time_scale()
        return self.slot_scale() if self.throttle_wait_scale is None else self.throttle_wait_scale

    def function_environment(self) -> dict[str, str]:
        """What the functions' workers get on top of the template's variables: this machine's data stores."""
        settings = get_settings()
        environment = {
            "DATABASE_URL": settings.effective_database_url,
            "SAGA_ALLOW_FAULTS": "true" if settings.allow_faults else "false",
            "AWS_DEFAULT_REGION": REGION,
        }
        if settings.effective_redis_url:
            environment["REDIS_URL"] = settings.effective_redis_url
        if self.endpoint_url:
            environment["AWS_ENDPOINT_URL"] = self.endpoint_url
        if settings.payment_provider_url:
            environment["PAYMENT_PROVIDER_URL"] = settings.payment_provider_url
            environment["PAYMENT_PROVIDER_API_KEY"] = settings.payment_provider_api_key
            environment["PAYMENT_PROVIDER_TIMEOUT_SECONDS"] = f"{settings.payment_provider_timeout_seconds:g}"
            # How long the provider remembers an idempotency key: the local one's own setting when it has one.
            environment["PAYMENT_PROVIDER_KEY_TTL_SECONDS"] = self.provider_environment.get(
                "PROVIDER_KEY_TTL_SECONDS", f"{settings.payment_provider_key_ttl_seconds:g}"
            )
        return environment | self.extra_environment

    def _start_payment_provider_unless_configured(self) -> None:
        """The payment provider, a service of its own: started as a process for the engine's life, unless
        PAYMENT_PROVIDER_URL names one."""
        settings = get_settings()
        if settings.payment_provider_url:
            return
        database_url = self.provider_database_url or os.environ.get("PROVIDER_DATABASE_URL")
        if database_url is None and database_engine(settings.effective_database_url) != "sqlite":
            database_url = settings.effective_database_url  # its own schema there (payment_provider.store)
        environment = {"PAYMENT_PROVIDER_API_KEY": settings.payment_provider_api_key, **self.provider_environment}
        self.provider = start_provider(self.provider_port, database_url, environment)
        self._stack.callback(self.provider.stop)
        self._stack.enter_context(mock.patch.object(settings, "payment_provider_url", None))
        settings.payment_provider_url = self.provider.url
        self._stack.callback(payment_provider.reset_client)
        payment_provider.reset_client()

    def _use_embedded_redis_unless_configured(self) -> None:
        """The embedded default: with no Redis configured, a fakeredis on loopback serves for the engine's life."""
        settings = get_settings()
        if settings.effective_redis_url:
            return
        self._stack.enter_context(mock.patch.object(settings, "redis_url", None))
        settings.redis_url = self._stack.enter_context(embedded_redis())
        self._stack.callback(saga_cache.reset_redis)
        self._stack.callback(idempotency.reset_idempotency)
        saga_cache.reset_redis()
        idempotency.reset_idempotency()

    def _serve_endpoint(self, port: int) -> None:
        stepfunctions = {"stepfunctions": {"execute_state_machine": True}}
        self._stack.enter_context(mock.patch.dict(moto_config.default_user_config, stepfunctions))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        self._stack.callback(server.stop)
        host, bound_port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{bound_port}"
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        os.environ["MOTO_PORT"] = str(bound_port)  # where the interpreter sends its Lambda invocations

    def _deploy(self, template: dict[str, Any]) -> None:
        resources = template["Resources"]
        role = boto3.client("iam").create_role(
            RoleName="local-saga-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )["Role"]["Arn"]
        lambda_client = boto3.client("lambda")
        defaults = template.get("Globals", {}).get("Function", {})
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::Serverless::Function":
                properties = {**defaults, **resource["Properties"]}
                self.function_arns[logical_id] = lambda_client.create_function(
                    FunctionName=logical_id,
                    Runtime=properties["Runtime"],
                    Role=role,
                    Handler=properties["Handler"],
                    Code={"ZipFile": _placeholder_zip()},
                )["FunctionArn"]
                if "AutoPublishAlias" in properties:
                    version = lambda_client.publish_version(FunctionName=logical_id)["Version"]
                    alias = properties["AutoPublishAlias"]
                    self.function_arns[f"{logical_id}{ALIAS_REF}"] = lambda_client.create_alias(
                        FunctionName=logical_id, Name=alias, FunctionVersion=version
                    )["AliasArn"]
        sfn = step_functions.sfn_client()
        settings = get_settings()
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::Serverless::StateMachine":
                definition = state_machine_definition(resource["Properties"], self._resolve)
                arn = sfn.create_state_machine(name=logical_id, definition=definition, roleArn=role)["stateMachineArn"]
                self.state_machine_arns[logical_id] = arn
                # moto's interpreter starts no execution on a state machine version or alias (checked on 5.2.5:
                # StartExecution on either fails), so sagas start on the state machine itself here.
                if "AutoPublishAlias" in resource["Properties"]:
                    self.state_machine_arns[f"{logical_id}Alias{resource['Properties']['AutoPublishAlias']}"] = arn
                setattr(settings, STATE_MACHINE_SETTINGS[logical_id], arn)

    def _resolve(self, value: Any) -> str:
        """A substitution's value: a function's ARN (`!GetAtt F.Arn`), its alias's (`!Ref F.Alias`: the alias
        published in moto, which runs the same worker processes), or a literal."""
        if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
            return self.function_arns[value["Fn::GetAtt"][0]]
        if isinstance(value, dict) and str(value.get("Ref", "")).endswith(ALIAS_REF):
            return self.function_arns[value["Ref"]]
        if isinstance(value, str):
            return value
        raise ValueError(f"the local engine cannot resolve the substitution {value!r}")

    def wait(self, execution_arn: str, timeout_seconds: float = 120.0, poll_seconds: float = 0.25) -> dict[str, Any]:
        """Wait until the execution ends; its description. The interpreter says when an execution ends, so a
        waiter does not poll: each DescribeExecution costs the executions' threads milliseconds of the
        interpreter's lock. It still looks every ``poll_seconds``, for an end it could not hear."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            with self._ended:
                self._ended.wait_for(
                    lambda: execution_arn in self._ended_arns, max(min(poll_seconds, deadline - time.monotonic()), 0)
                )
            description = step_functions.describe_execution(execution_arn)
            if description["status"] in FINAL_EXECUTION_STATUSES:
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still {description['status']} after {timeout_seconds}s")

    def _heard_the_end_of(self, execution_arn: str) -> None:
        with self._ended:
            self._ended_arns.add(execution_arn)
            self._ended.notify_all()


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "the code runs from the repository, in local_lambda worker processes")
    return buffer.getvalue()
