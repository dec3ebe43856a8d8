"""Fixtures of the integration tier: what the engine's functions print (their logs and metrics), and functions that
time out soon."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import discard_logs
from tests.helpers import FunctionLogs


@pytest.fixture
def function_logs(engine: LocalEngine) -> Iterator[FunctionLogs]:
    logs = FunctionLogs()
    engine.log_sink = logs
    yield logs
    engine.log_sink = discard_logs


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


SHORT_FUNCTION_TIMEOUT = 1.0


@pytest.fixture
def short_timeouts(engine: LocalEngine) -> Iterator[LocalEngine]:
    """Every function times out after a second (a configuration update: the workers are replaced)."""
    engine.function_timeout = SHORT_FUNCTION_TIMEOUT
    yield engine
    engine.function_timeout = None
