"""The whole packaged stack on host-mode LocalStack, without Docker, for `make localstack-demo` and the tests.

`with FullStack(workdir) as stack:` makes a throwaway PostgreSQL database (on 127.0.0.1:5432) and empties Redis
database 11, starts the payment provider on a free port, starts LocalStack with the runtime executor
`local-lambda` (infra/deploy/localstack/lambda_executor: each function runs in local_lambda worker processes, on the
Python of the template's runtime), and deploys `make package`'s output with LocalStack's CloudFormation
(infra/deploy/localstack/deploy.py). Leaving the block stops LocalStack (its workers die with it), the provider, and
drops the database, also on failure.

This process is pointed at the same database, Redis, provider and LocalStack (environment and settings), so a
caller can read what the sagas did, as `make demo` does.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
import sqlalchemy

from chalicelib.adapters import payment_provider
from chalicelib.settings import get_settings
from infra.deploy.localstack.deploy import REGION, DataStores, Deployment, StackDeployer
from infra.deploy.localstack.host import DEFAULT_PYTHON, HostLocalStack
from payment_provider.launcher import RunningProvider, start_provider

POSTGRES = "postgresql+pg8000://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379"
REDIS_DATABASE = 11
PROVIDER_API_KEY = "sk_test_local"
LAMBDA_RUNTIME = "python3.12"
SERVICES = (
    "cloudformation", "s3", "lambda", "stepfunctions", "apigateway", "iam", "sts", "secretsmanager", "ec2", "logs",
    "cloudwatch", "sns", "scheduler", "events",
)  # fmt: skip
"""What the stack's resources need; LocalStack starts nothing else."""


class NoLambdaPython(RuntimeError):
    """No interpreter for the functions' runtime: the deployment zip's wheels are built for it."""


def lambda_python(runtime: str = LAMBDA_RUNTIME) -> str:
    """An interpreter for `runtime`: LOCAL_LAMBDA_PYTHON3_12 if set, else pyenv's 3.12, else `python3.12` on PATH."""
    variable = "LOCAL_LAMBDA_" + runtime.upper().replace(".", "_")
    version = runtime.removeprefix("python")
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [os.environ.get(variable, "")]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/{runtime}"), reverse=True)
    # pyenv's shims answer for any version but run only the selected one: a real interpreter only.
    on_path = shutil.which(runtime)
    candidates += [on_path] if on_path and "/shims/" not in on_path else []
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            return candidate
    raise NoLambdaPython(f"no {runtime} found: install it (pyenv install {version}) or set {variable}")


@dataclass
class FullStack:
    workdir: Path
    localstack_python: Path = DEFAULT_PYTHON
    deploy_seconds: float = field(default=0.0, init=False)
    deployment: Deployment | None = field(default=None, init=False)
    localstack: HostLocalStack | None = field(default=None, init=False)
    provider: RunningProvider | None = field(default=None, init=False)
    database_name: str = field(default_factory=lambda: f"saga_localstack_{uuid.uuid4().hex[:8]}")
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)

    @property
    def database_url(self) -> str:
        return f"{POSTGRES}/{self.database_name}"

    def __enter__(self) -> FullStack:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        python = lambda_python()
        self._create_database()
        self._stack.callback(self._drop_database)
        self._flush_redis()
        self._stack.callback(self._flush_redis)
        self.provider = start_provider(0, self.database_url, {"PAYMENT_PROVIDER_API_KEY": PROVIDER_API_KEY})
        self._stack.callback(self.provider.stop)
        self.localstack = HostLocalStack(
            workdir=self.workdir,
            python=self.localstack_python,
            services=SERVICES,
            startup_timeout_seconds=120.0,
            environment={
                "LAMBDA_RUNTIME_EXECUTOR": "local-lambda",
                "LOCAL_LAMBDA_" + LAMBDA_RUNTIME.upper().replace(".", "_"): python,
                # Resource types the open-source core lacks (state machine versions and aliases, the custom
                # resource, metric filters, the dashboard) are deployed as placeholders, as it does by default.
                "CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES": "1",
            },
        )
        self.localstack.start()
        self._stack.callback(self.localstack.stop)
        self._point_this_process_here()
        started = time.monotonic()
        stores = DataStores(
            database_name=self.database_name,
            redis_database=REDIS_DATABASE,
            provider_url=self.provider.url,
            provider_api_key=PROVIDER_API_KEY,
        )
        deployer = StackDeployer(self.localstack.endpoint_url, stores, localstack_python=self.localstack_python)
        self.deployment = deployer.deploy()
        self.deploy_seconds = time.monotonic() - started

    def _create_database(self) -> None:
        engine = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT", hide_parameters=True)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{self.database_name}"'))
        engine.dispose()

    def _drop_database(self) -> None:
        engine = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT", hide_parameters=True)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
        engine.dispose()

    @staticmethod
    def _flush_redis() -> None:
        client = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DATABASE}")
        client.flushdb()
        client.close()

    def _point_this_process_here(self) -> None:
        """This process reads the stack's data, provider and executions as `make demo` reads its own."""
        assert self.localstack is not None and self.provider is not None  # nosec B101 - just started
        variables = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"{REDIS_URL}/{REDIS_DATABASE}",
            "PAYMENT_PROVIDER_URL": self.provider.url,
            "PAYMENT_PROVIDER_API_KEY": PROVIDER_API_KEY,
            "AWS_ENDPOINT_URL": self.localstack.endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",  # nosec B105 - LocalStack accepts any credentials
            "AWS_DEFAULT_REGION": REGION,
            "SAGA_ALLOW_FAULTS": "true",
        }
        previous = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        self._stack.callback(self._restore_environment, previous)
        get_settings.cache_clear()
        payment_provider.reset_client()

    @staticmethod
    def _restore_environment(previous: dict[str, str | None]) -> None:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        payment_provider.reset_client()


def worker_processes(workdir: Path) -> list[int]:
    """Processes still running function code from LocalStack's TMPDIR under `workdir` (a worker's cwd is there)."""
    code_root = workdir / "tmp"
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        with contextlib.suppress(OSError):
            if Path(os.readlink(cwd)).is_relative_to(code_root):
                found.append(int(cwd.parent.name))
    return found
