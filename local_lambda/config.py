"""What a function is, as a template declares it, and the environment its execution environments get."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_ACCOUNT_ID = "123456789012"
"""The account moto and LocalStack use unless told otherwise; only used to build an ARN when none is given."""
DEFAULT_REGION = "us-east-1"
FUNCTION_VERSION = "$LATEST"

LANG = "en_US.UTF-8"
TZ = ":UTC"
"""Lambda's own values for these two (its Python runtimes run with both set so)."""


@dataclass(frozen=True)
class FunctionConfig:
    """One Lambda function: its code, limits and environment, as a SAM/CloudFormation template declares them."""

    name: str
    handler: str
    """``module.attr``, as the template's ``Handler``."""
    code_paths: list[str]
    """Directories put first on the worker's ``sys.path``; the first is ``LAMBDA_TASK_ROOT`` and the cwd."""
    timeout_seconds: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    """Exactly what the template's ``Environment.Variables`` give, on top of the base and Lambda's own variables."""
    python: str = sys.executable
    """The interpreter the workers run on."""
    arn: str | None = None
    region: str | None = None
    """Sets ``AWS_REGION``/``AWS_DEFAULT_REGION``; taken from the ARN when not given."""
    snap_start: bool = False
    """``SnapStart: {ApplyOn: PublishedVersions}``: the configuration is initialised once, and each cold start
    restores an environment from its snapshot (``local_lambda.snapshot``)."""

    @property
    def function_arn(self) -> str:
        """The ARN invocations report as ``invoked_function_arn``: the given one, or one built from name and region."""
        if self.arn:
            return self.arn
        return f"arn:aws:lambda:{self.aws_region or DEFAULT_REGION}:{DEFAULT_ACCOUNT_ID}:function:{self.name}"

    @property
    def aws_region(self) -> str | None:
        """The region the function runs in, when it is known."""
        if self.region:
            return self.region
        if self.arn and self.arn.count(":") >= 4:
            return self.arn.split(":")[3] or None
        return None

    @property
    def log_group_name(self) -> str:
        """``/aws/lambda/<name>``, as Lambda names a function's log group."""
        return f"/aws/lambda/{self.name}"


def new_log_stream_name() -> str:
    """A log stream name as Lambda gives each execution environment: ``2025/08/31/[$LATEST]<32 hex>``."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[{FUNCTION_VERSION}]{uuid.uuid4().hex}"


def worker_environment(config: FunctionConfig, log_stream_name: str) -> dict[str, str]:
    """The whole ``os.environ`` of one execution environment: a minimal base, the function's variables, Lambda's own.

    Nothing else of this process's environment is passed on, so a handler cannot come to depend on a variable that
    only happens to be set where the tests run.
    """
    base = {"PATH": os.environ.get("PATH", os.defpath), "LANG": LANG, "TZ": TZ}
    if "HOME" in os.environ:
        base["HOME"] = os.environ["HOME"]
    lambda_variables = {
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": FUNCTION_VERSION,
        "AWS_LAMBDA_FUNCTION_TIMEOUT": _whole_seconds(config.timeout_seconds),
        "AWS_LAMBDA_LOG_GROUP_NAME": config.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "_HANDLER": config.handler,
    }
    if config.snap_start:
        # https://docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html: a SnapStart function has neither
        # log variable; https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html: its
        # initialization type.
        del lambda_variables["AWS_LAMBDA_LOG_GROUP_NAME"], lambda_variables["AWS_LAMBDA_LOG_STREAM_NAME"]
        lambda_variables["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    if config.code_paths:
        lambda_variables["LAMBDA_TASK_ROOT"] = config.code_paths[0]
    region = config.aws_region
    if region:
        lambda_variables["AWS_REGION"] = region
        lambda_variables["AWS_DEFAULT_REGION"] = region
    # Lambda refuses to let a function configure its reserved variables, so they win over the function's own.
    return {**base, **config.environment, **lambda_variables}


def _whole_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
