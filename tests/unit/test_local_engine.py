"""The local engine: template loading, the moto version guard and scaled retry waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import moto
import pytest
from moto.awslambda.models import LambdaFunction
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl

from chalicelib.settings import get_settings
from infra.engine import local_engine
from infra.engine.local_engine import MOTO_VERSION, LocalEngine, load_template
from tests.helpers import ROOT

SHORT_FORMS = """\
Resources:
  Machine:
    Properties:
      Arn: !GetAtt Step.Arn
      Name: !Ref Step
      Listed: !GetAtt [Step, Arn]
      Substituted: !Sub "${Step.Arn}"
      Plain: text
"""


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Templates the engine deploys, recorded instead of deployed.

    A full deployment would clash with the session's engine (`tests/conftest.py`) when the integration tests ran
    first: moto's backends are shared while any mock is active, and the IAM role would exist already.
    """
    templates: list[dict[str, Any]] = []
    monkeypatch.setattr(LocalEngine, "_deploy", lambda _engine, template: templates.append(template))
    return templates


def test_short_form_intrinsics_are_read_as_their_long_form(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(SHORT_FORMS)

    properties = load_template(template)["Resources"]["Machine"]["Properties"]

    assert properties == {
        "Arn": {"Fn::GetAtt": ["Step", "Arn"]},
        "Name": {"Ref": "Step"},
        "Listed": {"Fn::GetAtt": ["Step", "Arn"]},
        "Substituted": {"Fn::Sub": "${Step.Arn}"},
        "Plain": "text",
    }


def test_the_project_template_is_read_with_its_intrinsics() -> None:
    template = load_template()

    purchase = template["Resources"]["PurchaseSagaStateMachine"]["Properties"]
    assert purchase["DefinitionSubstitutions"]["ReserveStockFunctionArn"] == {"Ref": "ReserveStockFunction.Alias"}
    assert purchase["Policies"][0] == {"LambdaInvokePolicy": {"FunctionName": {"Ref": "ReserveStockFunction"}}}
    assert template["Outputs"]["PurchaseStateMachineArn"] == {"Value": {"Ref": "PurchaseSagaStateMachine"}}


def test_substitutions_resolve_to_the_deployed_function_and_alias_arns() -> None:
    function = "arn:aws:lambda:us-east-1:000000000000:function:Step"
    engine = LocalEngine(function_arns={"Step": function, "Step.Alias": f"{function}:live"})

    assert engine._resolve({"Fn::GetAtt": ["Step", "Arn"]}) == function
    assert engine._resolve({"Ref": "Step.Alias"}) == f"{function}:live"
    assert engine._resolve("literal") == "literal"
    with pytest.raises(ValueError, match="Ref"):
        engine._resolve({"Ref": "Step"})


def test_the_engine_refuses_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "4.0.0")
    invoke_before, time_before = LambdaFunction._invoke_lambda, retrier_decl.time

    with pytest.raises(RuntimeError) as raised, LocalEngine():
        pass

    assert MOTO_VERSION in str(raised.value)
    assert "4.0.0" in str(raised.value)
    assert (LambdaFunction._invoke_lambda, retrier_decl.time) == (invoke_before, time_before)


def test_the_retry_wait_scale_shortens_the_interpreters_sleeps_while_the_engine_runs(
    deployed: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retrier_decl, "time", time)  # as it is when no other engine runs

    with LocalEngine(retry_wait_scale=0.0):
        started = time.monotonic()
        retrier_decl.time.sleep(100)
        assert time.monotonic() - started < 1

    assert retrier_decl.time is time
    assert deployed == [load_template()]


def test_a_partial_retry_wait_scale_shortens_sleeps_in_proportion(deployed: list[dict[str, Any]]) -> None:
    with LocalEngine(retry_wait_scale=0.01):
        started = time.monotonic()
        retrier_decl.time.sleep(5)
        elapsed = time.monotonic() - started

    assert 0.04 <= elapsed < 1


@pytest.mark.parametrize(
    ("errors", "function_timeout", "expected"),
    [
        (["Lambda.TooManyRequestsException"], 5.0, 0.5),  # the slots are held half as long: so are its waits
        (["Lambda.TooManyRequestsException"], None, 1.0),  # held to the template's timeout: waits as deployed
        (["States.ALL"], 5.0, 0.01),  # a cause that holds no slot: the retry scale
    ],
)
def test_a_throttle_retrier_waits_scaled_as_the_slots_are_held_and_any_other_by_the_retry_scale(
    deployed: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    errors: list[str],
    function_timeout: float | None,
    expected: float,
) -> None:
    scales: list[float] = []
    retrier = SimpleNamespace(error_equals=SimpleNamespace(error_names=[SimpleNamespace(error_name=e) for e in errors]))

    with LocalEngine(retry_wait_scale=0.01, function_timeout=function_timeout) as engine:
        monkeypatch.setattr(
            local_engine, "_retrier_eval_body", lambda _retrier, _env: scales.append(engine.wait_scale())
        )
        RetrierDecl._eval_body(retrier, env=None)  # type: ignore[arg-type]
        scales.append(engine.wait_scale())  # once the retrier is done

    assert scales == [expected, 0.01]


PAUSE_THEN_SUCCEED = {
    "StartAt": "Pause",
    "States": {"Pause": {"Type": "Wait", "Seconds": 100, "Next": "Done"}, "Done": {"Type": "Succeed"}},
}


def _run_to_its_end(definition: dict[str, Any]) -> str:
    client = boto3.client("stepfunctions")
    machine = client.create_state_machine(
        name="pause", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/pause"
    )["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 30  # a hundred seconds unscaled: the test fails long before they pass
    while (status := client.describe_execution(executionArn=execution)["status"]) == "RUNNING":
        assert time.monotonic() < deadline, "the Wait state slept unscaled"
        time.sleep(0.05)
    return str(status)


def test_a_wait_state_sleeps_its_seconds_times_the_time_scale(deployed: list[dict[str, Any]]) -> None:
    with LocalEngine(retry_wait_scale=0.001):
        assert _run_to_its_end(PAUSE_THEN_SUCCEED) == "SUCCEEDED"


def test_local_time_scale_takes_the_place_of_the_tools_own_scale(
    deployed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_TIME_SCALE", "0.25")
    get_settings.cache_clear()
    try:
        with LocalEngine(retry_wait_scale=1.0) as engine:
            assert (engine.time_scale(), engine.wait_scale()) == (0.25, 0.25)
    finally:
        monkeypatch.delenv("LOCAL_TIME_SCALE")
        get_settings.cache_clear()
    with LocalEngine(retry_wait_scale=1.0) as engine:
        assert engine.wait_scale() == 1.0


def test_the_engine_starts_without_motos_batch_and_ec2_models_which_still_load_when_asked_for() -> None:
    script = """
import sys
import infra.engine.local_engine
print(sorted(name for name in ("moto.batch.models", "moto.ec2") if name in sys.modules))
from moto.backends import get_backend
print(get_backend("batch")["123456789012"]["us-east-1"].__class__.__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "BatchBackend"]
