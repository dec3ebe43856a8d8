"""The short soak inside `make test`, on PostgreSQL and on MySQL: 100 sagas with faults, duplicates, a Redis restart,
dropped connections, and a provider whose search lags, whose captures sometimes commit late and whose keys expire
before the operator retries the FAILED sagas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env

pytestmark = pytest.mark.alone

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("engine_name", ["postgres", "mysql"])
def test_short_soak_keeps_every_invariant(engine_name: str, request: pytest.FixtureRequest) -> None:
    env = child_env(request.getfixturevalue(f"{engine_name}_url"))

    done = subprocess.run(
        [
            *(sys.executable, "-m", "infra.tools.soak", "--count", "100", "--concurrency", "8", "--seed", "11"),
            *("--provider-listing-lag", "2", "--provider-key-ttl", "8", "--provider-slow-capture-rate", "0.05"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )

    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert lines[-1] == "soak PASS: 100 sagas, every invariant held"
    summary = "\n".join(lines)
    assert "restarted Redis" in summary and "dropped" in summary
    assert "duplicate deliveries: 0" not in summary and "faults injected: 0" not in summary
    assert "operator retries of FAILED sagas, their provider keys expired:" in summary
