"""The state machine pictures are drawn from the ASL files, and the committed ones are up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chalicelib.presentation.diagram import render

ROOT = Path(__file__).resolve().parents[2]
MACHINES = sorted((ROOT / "statemachines").glob("*.asl.json"))


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_every_state_and_every_transition_is_drawn(path: Path) -> None:
    definition = json.loads(path.read_text())

    svg = render(definition, path.name)

    assert set(re.findall(r'data-state="(\w+)"', svg)) == set(definition["States"])
    transitions = sum(("Next" in s) + len(s.get("Catch", [])) for s in definition["States"].values())
    assert svg.count("<line ") == transitions
    for state in definition["States"].values():
        for catch in state.get("Catch", []):
            names = [e for e in catch["ErrorEquals"] if e != "States.ALL"]
            assert all(name in svg for name in names)
    kinds = re.findall(r'class="state (\w+)"', svg)
    assert {"step", "compensation", "outcome"} == set(kinds)


def test_a_run_is_highlighted_on_the_picture() -> None:
    definition = json.loads((ROOT / "statemachines" / "purchase_saga.asl.json").read_text())

    svg = render(definition, "run", {"ReserveStock": "SUCCEEDED", "ProcessPayment": "FAILED"})

    reserve = re.search(r'data-state="ReserveStock">.*?</g>', svg, re.S)
    payment = re.search(r'data-state="ProcessPayment">.*?</g>', svg, re.S)
    assert reserve and 'stroke-width="3.5"' in reserve.group(0) and "succeeded" in reserve.group(0)
    assert payment and 'stroke="#b91c1c"' in payment.group(0) and "failed" in payment.group(0)
    assert 'class="ring"' in reserve.group(0) and 'class="ring"' in payment.group(0)
    assert re.search(r'class="state step off-path" opacity="0.35" data-state="ConfirmSale"', svg)
    assert "off-path" not in render(definition, "no run"), "a picture without a run fades nothing"


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_the_committed_picture_matches_its_definition(path: Path) -> None:
    name = path.name.removesuffix(".asl.json")
    committed = (ROOT / "docs" / f"{name}.svg").read_text()

    assert committed == render(json.loads(path.read_text()), name.replace("_", " ").capitalize()), "run `make diagrams`"
