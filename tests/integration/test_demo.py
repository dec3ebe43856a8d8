"""`make demo`'s program, run as a newcomer would, on a fresh embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.tools import samples
from tests.helpers import child_env

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_every_scenario_to_its_expected_status(tmp_path: Path) -> None:
    env = child_env(
        f"sqlite:///{tmp_path / 'demo.db'}",
        SAGA_ALLOW_FAULTS="true",
        PROVIDER_DATABASE_URL=f"sqlite:///{tmp_path / 'provider.db'}",
    )

    done = subprocess.run(
        [sys.executable, "-m", "infra.tools.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line[:2].strip().isdigit()]
    assert len(rows) == 10
    assert all(" ok (" in row for row in rows)
    assert "ProcessPaymentx2 > RefundPayment > ReleaseStock > Compensated" in done.stdout, "the cancelled purchase"
    assert "RefundPaymentx6 > CompensationFailed" in done.stdout
    assert "compensation refund_payment FAILED" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "all 10 scenarios ended as expected; no invariant broken."
    recorded = samples.read("demo").output
    assert samples.normalised("demo", done.stdout) == samples.normalised("demo", recorded), (
        "docs/samples/demo.txt is stale: run `make docs`"
    )


def test_demo_refuses_to_run_without_faults_allowed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SAGA_ALLOW_FAULTS"}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "PYTHONPATH": str(ROOT)}

    done = subprocess.run([sys.executable, "-m", "infra.tools.demo"], cwd=ROOT, env=env, capture_output=True, text=True)

    assert done.returncode == 2
    assert "SAGA_ALLOW_FAULTS=true" in done.stderr
