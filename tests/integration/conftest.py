"""Fixtures of the integration tier that read what the engine's functions print: their logs and metrics."""

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
