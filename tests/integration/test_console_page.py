"""`GET /console` (issue 27, part 6): counts by status, the search's keys kept in the URL, the matching sagas linking
to their pages with their failed step and age, actions only where they apply, and everything escaped.
Sagas are written through the data layer: the page renders what they hold, no execution is needed."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.tables import utcnow
from chalicelib.service import saga_search
from tests.conftest import Backend
from tests.helpers import SagaRow, write_sagas

pytestmark = pytest.mark.backends("postgres")
"""The page renders what GET /sagas and GET /sagas/stats answer, which are tested on every backend
(test_saga_search.py). So one backend: PostgreSQL, the deployed default."""

PLANTED = "<script>alert(1)</script>"
ROWS = [
    # (id suffix, type, status, customer, failed step, minutes ago)
    ("01", "purchase", "COMPLETED", "alice", None, 50),
    ("02", "purchase", "FAILED", "alice", "refund_payment", 40),
    ("03", "purchase", "RUNNING", "bob", None, 30),
    ("04", "return", "FAILED", "bob", "cancel_refund", 20),
    ("05", "purchase", "COMPENSATED", "alice", "confirm_sale", 10),
    ("06", "purchase", "FAILED", PLANTED, "refund_payment", 5),
]
"""The planted customer id cannot come through the API (an identifier's pattern refuses it): written straight to
the database, it stands for any value a client sent that the page shows."""
ROW = re.compile(r'<tr data-saga="(?P<saga>[0-9a-f]{32})">(?P<cells>.*?)</tr>', re.S)


def _saga_id(suffix: str) -> str:
    return "c" * 30 + suffix


@pytest.fixture
def rows(backend: Backend) -> None:
    now = utcnow()
    write_sagas(
        [
            SagaRow(
                _saga_id(suffix), saga_type, status, customer, now - timedelta(minutes=minutes), None, "SKU-MOUSE", step
            )
            for suffix, saga_type, status, customer, step, minutes in ROWS
        ]
    )


def _console(query: str = "") -> tuple[int, str, str]:
    with Client(app) as client:
        response = client.http.get("/console" + query)
    return response.status_code, response.headers.get("Content-Type", ""), response.body.decode()


def _rows(html: str) -> dict[str, str]:
    return {match["saga"]: match["cells"] for match in ROW.finditer(html)}


def _cells(row: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def _actions(row: str) -> list[str]:
    return re.findall(r'data-action="(\w+)"', row)


def _hrefs(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'href="([^"]*)"', html)]


def test_the_console_counts_sagas_by_status_and_lists_them_newest_first_each_linking_to_its_page(rows: None) -> None:
    status, content_type, html = _console()

    assert (status, content_type) == (200, "text/html; charset=utf-8")
    counts = dict(re.findall(r'<span class="status (\w+)">\1</span> (\d+)</a>', html))
    assert counts == {name: str(count) for name, count in saga_search.stats()["by_status"].items()}
    assert (counts["FAILED"], counts["RUNNING"], counts["COMPLETED"], counts["RESOLVED"]) == ("3", "1", "1", "0")
    listed = _rows(html)
    assert list(listed) == [_saga_id(row[0]) for row in reversed(ROWS)]
    for saga_id, cells in listed.items():
        assert f'<a href="sagas/{saga_id}/view">{saga_id}</a>' in cells
    failed = _cells(listed[_saga_id("02")])
    assert failed[:7] == [_saga_id("02"), "purchase", "FAILED", "alice", "", "SKU-MOUSE", "refund_payment"]
    assert re.fullmatch(r"40m \d+s", failed[7]) and re.fullmatch(r"40m \d+s", failed[8]), failed
    assert "http" not in html, "no external resources; every URL is relative"


def test_actions_are_offered_on_failed_and_running_sagas_only(rows: None) -> None:
    _, _, html = _console()

    actions = {saga_id: _actions(cells) for saga_id, cells in _rows(html).items()}

    assert actions == {
        _saga_id("01"): [],
        _saga_id("02"): ["retry", "resolve"],
        _saga_id("03"): ["retry", "cancel"],
        _saga_id("04"): ["retry", "resolve"],
        _saga_id("05"): [],
        _saga_id("06"): ["retry", "resolve"],
    }
    assert html.count('class="note"') == 3, "a note to resolve with, on each FAILED saga"


def test_the_search_s_keys_stay_in_the_form_the_links_and_the_bulk_retry(rows: None) -> None:
    status, _, html = _console("?status=FAILED,RUNNING&customer_id=bob&limit=1")

    assert status == 200
    assert list(_rows(html)) == [_saga_id("04")]
    form = dict(re.findall(r'<input name="(\w+)" value="([^"]*)"', html))
    assert {key: value for key, value in form.items() if value} == {
        "status": "FAILED,RUNNING",
        "customer_id": "bob",
        "limit": "1",
    }
    [next_page] = [href for href in _hrefs(html) if "cursor=" in href]
    assert parse_qs(urlsplit(next_page).query).keys() == {"status", "customer_id", "limit", "cursor"}
    assert list(_rows(_console(next_page.removeprefix("console"))[2])) == [_saga_id("03")]
    by_status = [parse_qs(urlsplit(href).query) for href in _hrefs(html) if href.startswith("console?")]
    assert {"status": ["RESOLVED"], "customer_id": ["bob"], "limit": ["1"]} in by_status
    [bulk] = re.findall(r'<button id="bulk" type="button" data-filter="([^"]*)"', html)
    assert json.loads(unescape(bulk)) == {"status": "FAILED,RUNNING", "customer_id": "bob"}


def test_a_key_the_form_left_empty_is_not_given(rows: None) -> None:
    status, _, html = _console("?status=FAILED&type=&customer_id=bob&created_after=&limit=")

    assert status == 200
    assert list(_rows(html)) == [_saga_id("04")]


def test_what_a_client_sent_is_shown_escaped(rows: None) -> None:
    _, _, html = _console("?status=FAILED")

    assert PLANTED not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1, "the page's own script only"
    assert _cells(_rows(html)[_saga_id("06")])[3] == PLANTED


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"?customer_id={PLANTED}", "customer_id"),
        ("?status=FAILED,LOST", "status"),
        ("?created_after=yesterday", "created_after"),
        ("?cursor=not-one", "cursor"),
        ("?limit=0", "limit"),
    ],
    ids=["planted-customer", "unknown-status", "bad-time", "bad-cursor", "bad-limit"],
)
def test_a_bad_search_is_a_400_naming_the_key_and_not_a_page(backend: Backend, query: str, field: str) -> None:
    status, content_type, body = _console(query)

    assert status == 400 and "html" not in content_type, body
    answer = json.loads(body)
    assert PLANTED not in body
    assert answer["error"] == "ValidationError"
    assert field in json.dumps(answer["details"])
