"""The canary's signal (docs/design.md §7.3): `DefinitionFaults`, counted once per fault a Catch caught, against the
digest of the definition the execution ran; never for a declared error, a business outcome among them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from chalicelib.adapters import step_functions
from chalicelib.domain.contracts import SagaRequest
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import (
    ROOT,
    FunctionLogs,
    SagaRun,
    emf_records,
    give_back,
    metric_counts,
    purchase,
    run_saga,
)

FAULTS = "DefinitionFaults"


@pytest.fixture
def measured(
    engine: LocalEngine, metrics_on: None, capsys: pytest.CaptureFixture[str], function_logs: FunctionLogs
) -> Iterator[tuple[LocalEngine, FunctionLogs]]:
    capsys.readouterr()
    yield engine, function_logs


def _faults(logs: FunctionLogs, run: SagaRun) -> dict[tuple[str, ...], int]:
    """The saga's DefinitionFaults records: (saga type, definition) -> how many."""
    counts = metric_counts(emf_records(logs.getvalue()), run.saga_id)
    return {key[1:]: number for key, number in counts.items() if key[0] == FAULTS}


def _deployed_digest(machine_arn: str) -> str:
    """What the deployed definition's Tasks pass as `definition`: one value, the same in every Task."""
    states = json.loads(step_functions.sfn_client().describe_state_machine(stateMachineArn=machine_arn)["definition"])
    [digest] = {
        state["Parameters"]["Payload"]["definition"] for state in states["States"].values() if "Parameters" in state
    }
    return str(digest)


def _file_digest(saga_type: str) -> str:
    return hashlib.sha256((ROOT / "statemachines" / f"{saga_type}_saga.asl.json").read_bytes()).hexdigest()[:12]


def test_a_step_that_crashes_on_every_attempt_is_a_fault_of_the_definition_that_ran(
    backend: Backend, measured: tuple[LocalEngine, FunctionLogs]
) -> None:
    engine, logs = measured
    settings = get_settings()
    bought = run_saga(engine, purchase(confirm_sale="crash"))
    order = run_saga(engine, purchase()).result["order_id"]
    returned = run_saga(engine, give_back(order, update_stock="crash"))

    assert (bought.status, returned.status) == ("COMPENSATED", "COMPENSATED")
    purchase_digest = _deployed_digest(settings.purchase_state_machine_arn)
    return_digest = _deployed_digest(settings.return_state_machine_arn)
    assert (purchase_digest, return_digest) == (_file_digest("purchase"), _file_digest("return"))
    assert _faults(logs, bought) == {("purchase", purchase_digest): 1}
    assert _faults(logs, returned) == {("return", return_digest): 1}


@pytest.mark.parametrize(
    ("request_", "outcome"),
    [
        (purchase(confirm_sale="fail", refund_payment="fail"), "FAILED"),
        (purchase(token="tok_declined"), "COMPENSATED"),
        (purchase(sku="SKU-NOPE"), "REJECTED"),
    ],
    ids=["compensation-failed-on-declared-errors", "declined", "rejected"],
)
def test_business_outcomes_are_no_fault(
    backend: Backend, measured: tuple[LocalEngine, FunctionLogs], request_: SagaRequest, outcome: str
) -> None:
    engine, logs = measured
    run = run_saga(engine, request_)

    assert run.status == outcome
    counts = metric_counts(emf_records(logs.getvalue()), run.saga_id)
    assert sum(n for key, n in counts.items() if key[0] == "SagasEnded") == 1  # its metrics were read
    assert _faults(logs, run) == {}


def test_an_execution_of_an_older_definition_counts_its_faults_against_its_own_digest(
    backend: Backend, measured: tuple[LocalEngine, FunctionLogs], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, logs = measured
    settings = get_settings()
    sfn = step_functions.sfn_client()
    current = settings.purchase_state_machine_arn
    described = sfn.describe_state_machine(stateMachineArn=current)
    new_digest = _deployed_digest(current)
    old_digest = hashlib.sha256(b"an older purchase_saga.asl.json").hexdigest()[:12]
    older = sfn.create_state_machine(
        name="PurchaseSagaStateMachineOlder",
        definition=described["definition"].replace(new_digest, old_digest),
        roleArn=described["roleArn"],
    )["stateMachineArn"]
    monkeypatch.setattr(settings, "purchase_state_machine_arn", older)

    run = run_saga(engine, purchase(confirm_sale="crash"))

    assert run.status == "COMPENSATED"
    assert _faults(logs, run) == {("purchase", old_digest): 1}
