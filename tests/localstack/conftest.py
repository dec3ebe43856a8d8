"""Host-mode LocalStack for the mocked tier (test_sagas.py): one per session, on a free loopback port, stopped at
the end. The whole-stack tier (test_full_stack.py) starts its own, with the Lambda runtime executor.

`make test-localstack` creates its virtualenv and passes its interpreter as LOCALSTACK_PYTHON. If LocalStack
cannot start, the tests fail with the tail of its log; they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.deploy.localstack.host import DEFAULT_PYTHON, HostLocalStack
from tests.saga_cases import MOCK_CONFIG_FILE

REGION = "us-east-1"
SERVICES = ("stepfunctions", "iam", "apigateway", "sts")
"""No lambda: without Docker it could not run code, and mocked Tasks never call it."""


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostLocalStack]:
    python = Path(os.environ.get("LOCALSTACK_PYTHON", str(DEFAULT_PYTHON)))
    instance = HostLocalStack(
        workdir=tmp_path_factory.mktemp("localstack"), python=python, services=SERVICES, mock_config=MOCK_CONFIG_FILE
    )
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def aws(localstack: HostLocalStack) -> Callable[[str], Any]:
    """A boto3 client of the given service on LocalStack."""

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=localstack.endpoint_url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    return client
