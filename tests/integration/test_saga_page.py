"""`GET /sagas/{id}/view`: the saga's status, steps, highlighted path and history, on one self-contained page."""

from __future__ import annotations

import re

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters import step_functions
from chalicelib.service import operator_actions, sagas
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import finish, give_back, purchase

pytestmark = pytest.mark.backends("postgres")
"""The page renders what the saga views read; reading them is tested on every backend (test_api.py). So one
backend: PostgreSQL, the deployed default."""


def _page(saga_id: str) -> tuple[int, str, str]:
    with Client(app) as client:
        response = client.http.get(f"/sagas/{saga_id}/view")
    return response.status_code, response.headers.get("Content-Type", ""), response.body.decode()


def _state(html: str, name: str) -> str:
    match = re.search(rf'data-state="{name}">.*?</g>', html, re.S)
    assert match, name
    return match.group(0)


def test_the_page_shows_the_path_a_compensated_saga_took(backend: Backend, engine: LocalEngine) -> None:
    run = finish(
        engine, sagas.start_saga(purchase(token="tok_flaky", confirm_sale="fail"), step_functions.start_execution).id
    )

    status, content_type, html = _page(run.saga_id)

    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert 'class="status COMPENSATED"' in html
    assert "retried" in _state(html, "ProcessPayment")
    assert 'stroke="#b91c1c"' in _state(html, "ConfirmSale") and "failed" in _state(html, "ConfirmSale")
    assert "succeeded" in _state(html, "ReleaseStock") and "succeeded" in _state(html, "Compensated")
    assert "succeeded" not in _state(html, "Completed")
    events = sagas.read_history(run.saga_id) or []
    assert len(events) == 9
    assert html.count("<tr>") == 1 + 5 + 1 + len(events)  # header and steps, header and history events
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', ""), "no external resources"


def test_what_a_client_sent_is_shown_escaped(backend: Backend, engine: LocalEngine) -> None:
    bought = finish(engine, sagas.start_saga(purchase(), step_functions.start_execution).id)
    request = give_back(bought.result["order_id"])
    request = request.model_copy(update={"reason": "<script>alert(1)</script>"})
    run = finish(engine, sagas.start_saga(request, step_functions.start_execution).id)

    _, _, html = _page(run.saga_id)

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_resolved_saga_s_page_shows_its_failed_path_and_who_resolved_it_and_why(
    backend: Backend, engine: LocalEngine
) -> None:
    request = purchase(confirm_sale="fail", refund_payment="fail")
    run = finish(engine, sagas.start_saga(request, step_functions.start_execution).id)
    operator_actions.resolve(run.saga_id, "refunded <by hand>", "local")

    _, _, html = _page(run.saga_id)

    assert 'class="status RESOLVED"' in html
    assert "failed" in _state(html, "CompensationFailed") and "failed" in _state(html, "Failed")
    assert "<td>RESOLVED</td><td>1</td><td></td><td>resolve by local: refunded &lt;by hand&gt;</td>" in html


def test_an_unknown_saga_has_no_page(backend: Backend) -> None:
    status, _, html = _page("0" * 32)

    assert status == 404 and "NotFound" in html
