"""Headless Chromium uses the console (issue 27, part 6): it searches, resolves a FAILED saga through the page and sees
it RESOLVED; and its bulk retry sends the dry run first and starts the retry only once confirmed.

The screenshot goes to the test's tmp dir (its path is printed: `pytest -rA` shows it), or to CONSOLE_SCREENSHOT if
set: `CONSOLE_SCREENSHOT=docs/console.png` refreshes the one in docs/operations.md.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from chalicelib.presentation.console_page import render_console
from tests.e2e.browser import confined_context
from tests.e2e.server import Server
from tests.helpers import ROOT

STAGE = "http://console.test/api"
"""The stub's base: the page's requests must stay under API Gateway's stage path."""


@pytest.mark.backends("postgres")  # the browser drives the page; the database decides nothing here
def test_an_operator_finds_a_failed_purchase_and_resolves_it_through_the_console(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    completed = _bought(server, {})
    failed, still_failed = (_bought(server, {"confirm_sale": "fail", "refund_payment": "fail"}) for _ in range(2))
    finals = [server.api.final(saga_id)["status"] for saga_id in (completed, failed, still_failed)]
    assert finals == ["COMPLETED", "FAILED", "FAILED"]
    confined = confined_context(browser, server.api.base_url, width=1400, height=700)
    context = confined.context
    try:
        page = context.new_page()
        page.goto(f"{server.api.base_url}/console")
        page.fill('input[name="customer_id"]', "c-console")
        page.fill('input[name="status"]', "FAILED")
        page.click('button[type="submit"]')
        page.wait_for_url("**/console?*")

        assert parse_qs(urlsplit(page.url).query) == {"status": ["FAILED"], "customer_id": ["c-console"]}
        listed = page.locator("tr[data-saga]").evaluate_all("rows => rows.map(row => row.dataset.saga)")
        assert listed == [still_failed, failed]
        row = page.locator(f'tr[data-saga="{failed}"]')
        expect(row.locator("td").nth(6)).to_have_text("refund_payment")
        expect(row.locator(f'a[href="sagas/{failed}/view"]')).to_be_visible()
        row.locator("input.note").fill("refunded by hand")
        row.locator('button[data-action="resolve"]').click()
        expect(row.locator("td.saga-status")).to_have_text("RESOLVED")
        expect(page.locator("#message")).to_have_text(f"resolve of saga {failed}: RESOLVED")

        status, view = server.api.call("GET", f"/sagas/{failed}")
        assert (status, view["status"]) == (200, "RESOLVED")
        page.goto(f"{server.api.base_url}/console?customer_id=c-console")
        statuses = page.locator("tr[data-saga] td.saga-status").all_inner_texts()
        assert statuses == ["FAILED", "RESOLVED", "COMPLETED"]
        actions = page.locator("tr[data-saga] button").evaluate_all("buttons => buttons.map(b => b.dataset.action)")
        assert actions == ["retry", "resolve"], "actions on the FAILED saga only"
        screenshot = Path(os.environ.get("CONSOLE_SCREENSHOT") or tmp_path / "console.png")
        page.screenshot(path=ROOT / screenshot, full_page=True)
        print(f"screenshot of the console: {ROOT / screenshot}")
        assert confined.elsewhere == [], f"the console asked for something other than the server: {confined.elsewhere}"
    finally:
        context.close()


def test_the_bulk_retry_sends_its_dry_run_and_starts_only_once_confirmed(browser: Browser) -> None:
    query = {"status": "FAILED", "customer_id": "c-1", "limit": "5"}
    stats = {"total": 3, "by_status": {"FAILED": 3}, "stuck": 0, "oldest_running_age_seconds": None}
    html = render_console(query, stats, [], None, datetime.now(UTC))
    sent: list[tuple[str, str, dict[str, Any]]] = []

    def stub_api(route: Route) -> None:
        request = route.request
        if (request.method, request.url) == ("GET", f"{STAGE}/console?status=FAILED&customer_id=c-1&limit=5"):
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
            return
        body = json.loads(request.post_data or "null")
        sent.append((request.method, request.url, body))
        if body and body.get("dry_run"):
            route.fulfill(status=200, json={"matched": 3, "saga_ids": ["a" * 32, "b" * 32, "c" * 32]})
        else:
            route.fulfill(status=202, json={"operation_id": "op-1", "matched": 3})

    context = confined_context(browser, STAGE).context
    context.route("**/*", stub_api)
    try:
        page = context.new_page()
        page.goto(f"{STAGE}/console?status=FAILED&customer_id=c-1&limit=5")
        confirm = page.locator("#bulk-confirm")
        expect(confirm).to_be_hidden()

        page.click("#bulk")
        expect(confirm).to_have_text("Retry these 3 sagas")
        assert sent == [
            ("POST", f"{STAGE}/sagas/retry", {"filter": {"status": "FAILED", "customer_id": "c-1"}, "dry_run": True})
        ]

        confirm.click()
        expect(page.locator("#message")).to_contain_text("operation op-1 retries 3 sagas")
        assert sent[1:] == [("POST", f"{STAGE}/sagas/retry", {"filter": {"status": "FAILED", "customer_id": "c-1"}})]
        expect(confirm).to_be_hidden()
    finally:
        context.close()


def _bought(server: Server, faults: dict[str, str]) -> str:
    purchase = {
        "customer_id": "c-console",
        "sku": "SKU-MOUSE",
        "quantity": 1,
        "payment_token": "tok_visa",
        "faults": faults,
    }
    status, accepted = server.api.call("POST", "/purchases", purchase)
    assert status == 202, accepted
    return str(accepted["saga_id"])
