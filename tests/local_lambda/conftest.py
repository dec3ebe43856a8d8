"""Fixtures for the local Lambda runtime: function configs over the fake handlers, and a runtime that records logs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_lambda import FunctionConfig, Invocation, LambdaRuntime

HANDLERS_DIR = Path(__file__).parent / "handlers"


class RecordingRuntime(LambdaRuntime):
    """A runtime whose log sink keeps what it was given, per function."""

    def __init__(self, **kwargs: Any) -> None:
        self.logged: list[tuple[str, str]] = []
        super().__init__(log_sink=lambda name, text: self.logged.append((name, text)), **kwargs)


@pytest.fixture
def runtime() -> Iterator[RecordingRuntime]:
    with RecordingRuntime() as started:
        yield started


@pytest.fixture
def function() -> Callable[..., FunctionConfig]:
    """A FunctionConfig for a handler in tests/local_lambda/handlers, with short limits unless overridden."""

    def build(handler: str, **overrides: Any) -> FunctionConfig:
        settings: dict[str, Any] = {
            "name": handler.replace(".", "-"),
            "handler": handler,
            "code_paths": [str(HANDLERS_DIR)],
            "timeout_seconds": 5.0,
            "memory_mb": 256,
        }
        return FunctionConfig(**{**settings, **overrides})

    return build


def answer(invocation: Invocation) -> Any:
    """The invocation's payload, decoded."""
    return json.loads(invocation.payload)


def process_running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie nobody reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``seconds``."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        pause.wait(0.02)
    raise AssertionError("condition not met in time")
