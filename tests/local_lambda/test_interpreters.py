"""The worker runs on the Python a function names, not only on the runtime's own (LocalStack's venv is 3.13)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from local_lambda import FunctionConfig
from tests.local_lambda.conftest import HANDLERS_DIR, RecordingRuntime, answer

IN_CI = os.environ.get("CI", "").lower() == "true"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def _pyenv_python(version: str) -> str | None:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))
    return str(candidates[-1]) if candidates else None


def _required_python(version: str) -> str:
    python = _pyenv_python(version)
    if python is None:
        message = f"no pyenv Python {version} (pyenv install {version})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_the_worker_runs_on_another_python(
    version: str, runtime: RecordingRuntime, function: Callable[..., FunctionConfig]
) -> None:
    python = _required_python(version)
    runtime.register(function("basic.interpreter", python=python))

    seen = answer(runtime.invoke("basic-interpreter", b"{}"))
    warm = runtime.invoke("basic-interpreter", b"{}")

    assert seen == {
        "version": [int(part) for part in version.split(".")],
        "execution_env": f"AWS_Lambda_python{version}",
    }
    assert not warm.cold_start and warm.function_error is None


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_the_runtime_itself_runs_on_another_python(version: str) -> None:
    python = _required_python(version)
    program = textwrap.dedent(
        f"""
        from local_lambda import FunctionConfig, LambdaRuntime

        with LambdaRuntime([FunctionConfig("f", "basic.interpreter", [{str(HANDLERS_DIR)!r}])], log_sink=print) as rt:
            print(rt.invoke("f", b"{{}}").payload.decode())
        """
    )

    finished = subprocess.run(
        [python, "-c", program],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert json.loads(finished.stdout.splitlines()[-1])["version"] == [int(part) for part in version.split(".")]
    assert "START RequestId: " in finished.stdout
