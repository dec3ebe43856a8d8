"""`python -m chalicelib status|history`: what a saga did, as tables in a terminal."""

from __future__ import annotations

import pytest

from chalicelib.entrypoints import cli
from infra.engine.local_engine import LocalEngine
from infra.tools import samples
from tests.conftest import Backend
from tests.helpers import purchase, run_saga

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
