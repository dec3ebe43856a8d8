"""Headless Chromium opens the page `make run` serves for a compensated saga, and looks at what it drew.

Debian's chromium (/usr/bin/chromium), driven by Playwright; nothing is downloaded. The screenshot is kept as
an artefact in the test's tmp dir (its path is printed: `pytest -s` or `-rA` shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageColor
from playwright.sync_api import Browser

from chalicelib.presentation.diagram import RING
from tests.e2e.browser import confined_context
from tests.e2e.server import Server

# A purchase whose payment fails once (retried), then whose sale fails (compensated): how it met each state.
MET = {
    "ReserveStock": "succeeded",
    "ProcessPayment": "retried",
    "ConfirmSale": "failed",
    "RefundPayment": "succeeded",
    "ReleaseStock": "succeeded",
    "Compensated": "succeeded",
}
NOT_TAKEN = {"Completed", "Rejected", "CompensationFailed", "Failed"}
RING_RGB = {how.lower(): ImageColor.getrgb(colour)[:3] for how, colour in RING.items()}
SAME_COLOUR = 8  # per channel: anti-aliased edges blend, the inside of a 5 px ring does not
RING_PIXELS = 1_000  # a ring around a 170x54 box is some 2,500 px; its anti-aliased rim is not counted

STATES_DRAWN = """() => [...document.querySelectorAll("svg g.state")].map(group => {
    const box = group.querySelector("rect.box"), ring = group.querySelector("rect.ring");
    const bounds = box.getBoundingClientRect();
    return {
        state: group.dataset.state,
        classes: [...group.classList],
        opacity: parseFloat(getComputedStyle(group).opacity),
        strokeWidth: parseFloat(getComputedStyle(box).strokeWidth),
        ring: ring && getComputedStyle(ring).stroke,
        bounds: [bounds.left + window.scrollX, bounds.top + window.scrollY, bounds.right + window.scrollX,
                 bounds.bottom + window.scrollY],
    };
})"""


@pytest.mark.backends("postgres")  # the browser draws what the API answers; the database decides nothing here
def test_the_page_of_a_compensated_purchase_draws_its_path_highlighted(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    purchase = {
        "customer_id": "c-browser",
        "sku": "SKU-MOUSE",
        "quantity": 1,
        "payment_token": "tok_flaky",
        "faults": {"confirm_sale": "fail"},
    }
    status, accepted = server.api.call("POST", "/purchases", purchase)
    assert status == 202, accepted
    assert server.api.final(accepted["saga_id"])["status"] == "COMPENSATED"
    url = f"{server.api.base_url}/sagas/{accepted['saga_id']}/view"

    page = _open(browser, url, server.api.base_url, tmp_path / "saga-page.png")

    assert page.status == 200
    assert page.elsewhere == [], f"the page asked for something other than the server: {page.elsewhere}"
    assert page.requested == [url], "the page is self-contained: one request"
    assert page.svg is not None and page.svg["width"] > 600 and page.svg["height"] > 400, page.svg
    assert set(page.states) == set(MET) | NOT_TAKEN
    shot = Image.open(page.screenshot).convert("RGB")
    for name, how in MET.items():
        drawn = page.states[name]
        assert {"on-path", how} <= set(drawn["classes"]), drawn
        assert drawn["opacity"] == 1 and drawn["strokeWidth"] > 3, drawn
        assert drawn["ring"] == "rgb({}, {}, {})".format(*RING_RGB[how]), drawn
        assert _pixels_of(shot, drawn["bounds"], RING_RGB[how]) > RING_PIXELS, f"no {how} ring seen on {name}"
    for name in NOT_TAKEN:
        drawn = page.states[name]
        assert "off-path" in drawn["classes"] and "on-path" not in drawn["classes"], drawn
        assert drawn["opacity"] < 0.5 and drawn["strokeWidth"] < 2 and drawn["ring"] is None, drawn
        assert all(_pixels_of(shot, drawn["bounds"], rgb) == 0 for rgb in RING_RGB.values()), f"{name} is ringed"


@dataclass
class OpenedPage:
    status: int | None
    requested: list[str]
    elsewhere: list[str]
    svg: dict[str, float] | None
    states: dict[str, dict[str, Any]]
    screenshot: Path


def _open(browser: Browser, url: str, server_url: str, screenshot: Path) -> OpenedPage:
    """Load `url` letting through only requests to the server; screenshot the whole page, read the drawn states."""
    confined = confined_context(browser, server_url)
    context = confined.context
    try:
        page = context.new_page()
        response = page.goto(url, wait_until="load")
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot of {url}: {screenshot}")
        svg = page.locator("svg")
        return OpenedPage(
            status=response.status if response else None,
            requested=confined.requested,
            elsewhere=confined.elsewhere,
            svg=dict(svg.bounding_box() or {}) if svg.is_visible() else None,
            states={state["state"]: state for state in page.evaluate(STATES_DRAWN)},
            screenshot=screenshot,
        )
    finally:
        context.close()


def _pixels_of(image: Image.Image, bounds: list[float], rgb: tuple[int, ...], margin: int = 10) -> int:
    """Pixels of colour `rgb` (give or take SAME_COLOUR) in the box `bounds` widened by `margin` (the ring)."""
    left, top, right, bottom = bounds
    area = image.crop((int(left) - margin, int(top) - margin, int(right) + margin, int(bottom) + margin))
    return sum(
        1
        for pixel in area.get_flattened_data()
        if all(abs(channel - wanted) <= SAME_COLOUR for channel, wanted in zip(pixel, rgb, strict=True))
    )
