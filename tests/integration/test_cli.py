"""`python -m chalicelib status|history`: what a saga did, as tables in a terminal; `retry` and `operation`: a bulk
retry from the terminal."""

from __future__ import annotations

import pytest

from chalicelib.entrypoints import cli
from infra.engine.local_engine import LocalEngine
from infra.tools import samples
from tests.conftest import Backend
from tests.helpers import moved_saga, purchase, run_saga

pytestmark = pytest.mark.backends("postgres")
"""The tables render what the saga views read; reading them is tested on every backend (test_api.py). So one
backend: PostgreSQL, the deployed default."""


def test_status_shows_the_saga_and_each_step_with_its_attempts_as_docs_operations_shows(
    backend: Backend, engine: LocalEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_saga(engine, purchase(token="tok_flaky", confirm_sale="fail"))

    assert cli.main(["status", run.saga_id]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[1] == "status   COMPENSATED"
    header = next(number for number, line in enumerate(lines) if line.startswith("step"))
    steps = {line.split()[0]: line.split()[1:4] for line in lines[header + 2 :]}
    assert steps == {
        "reserve_stock": ["execute", "SUCCEEDED", "1"],
        "process_payment": ["execute", "SUCCEEDED", "2"],
        "confirm_sale": ["execute", "FAILED", "1"],
        "refund_payment": ["compensate", "SUCCEEDED", "1"],
        "release_stock": ["compensate", "SUCCEEDED", "1"],
    }
    assert cli.main(["history", run.saga_id]) == 0
    fresh = {"cli_status": "\n".join(lines), "cli_history": capsys.readouterr().out}
    for name, output in fresh.items():
        recorded = samples.read(name).output
        assert samples.normalised(name, output) == samples.normalised(name, recorded), (
            f"docs/samples/{name}.txt is stale: run `make docs`"
        )


def test_history_lists_every_event_oldest_first(
    backend: Backend, engine: LocalEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_saga(engine, purchase(token="tok_declined"))

    assert cli.main(["history", run.saga_id]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]

    assert [row.split()[1:4] for row in rows] == [
        ["saga", "saga", "RUNNING"],
        ["reserve_stock", "execute", "SUCCEEDED"],
        ["process_payment", "execute", "FAILED"],
        ["saga", "saga", "COMPENSATING"],
        ["release_stock", "compensate", "SUCCEEDED"],
        ["saga", "saga", "COMPENSATED"],
    ]
    assert "PaymentDeclined" in rows[2]


def test_an_unknown_saga_is_an_error(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "0" * 32]) == 1
    assert "no saga" in capsys.readouterr().err


def test_retry_counts_in_a_dry_run_records_the_operation_and_operation_shows_it(
    backend: Backend, engine: LocalEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = moved_saga(purchase(), "COMPENSATING", "FAILED")
    moved_saga(purchase(), "REJECTED")

    assert cli.main(["retry", "--customer-id", "c-1", "--status", "FAILED,REJECTED", "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert cli.main(["retry", "--customer-id", "c-1", "--status", "FAILED,REJECTED"]) == 0
    recorded = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines()[2:] if line.strip())
    assert cli.main(["operation", recorded["operation"]]) == 0
    shown = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines()[2:])
    assert cli.main(["retry", "--status", "DONE", "--dry-run"]) == 2
    refused = capsys.readouterr().err

    assert dry[0] == "1 saga(s) to retry (dry run: nothing changed)"
    assert dry[3].split()[:3] == [failed, "purchase", "FAILED"] and len(dry) == 4
    assert (recorded["matched"], recorded["status"], recorded["started"]) == ("1", "PENDING", "0")
    assert shown["filter"] == "--status FAILED,REJECTED --customer-id c-1"
    assert refused.startswith("--status: ")
