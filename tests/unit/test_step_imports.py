"""A step handler's cold start imports what its path uses: no boto3 (its secrets come through the Parameters and
Secrets extension, its idempotency records from Powertools without the DynamoDB layer), and no HTTP client unless
the step calls the payment provider."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

STEPS = ("reserve_stock", "process_payment", "confirm_sale", "release_stock", "refund_payment")
STEPS += ("validate_return", "issue_refund", "update_stock", "cancel_refund", "compensation_failed")


def _loaded_after_importing(module: str, then: str = "") -> dict[str, bool]:
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"{then}\n"
        "print(json.dumps({name: name in sys.modules for name in ('boto3', 'http.client', 'snapshot_restore_py')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_no_step_handler_imports_boto3_or_an_http_client_at_init() -> None:
    for step in STEPS:
        loaded = _loaded_after_importing(f"functions.{step}")

        assert loaded == {"boto3": False, "http.client": False, "snapshot_restore_py": True}, step


def test_powertools_dynamodb_layer_still_loads_for_whoever_asks_for_it() -> None:
    loaded = _loaded_after_importing(
        "functions.reserve_stock",
        then=(
            "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer\n"
            "assert DynamoDBPersistenceLayer.__module__.endswith('persistence.dynamodb'), DynamoDBPersistenceLayer"
        ),
    )

    assert loaded["boto3"] is True
