"""What the browser tests share: a page context of fixed size and timeouts, kept to one server."""

from __future__ import annotations

from dataclasses import dataclass, field

from playwright.sync_api import Browser, BrowserContext, Route

TIMEOUT_MS = 15_000


@dataclass
class Confined:
    """A browser context whose requests reach `server_url` only: each is recorded, and those elsewhere aborted."""

    context: BrowserContext
    requested: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)


def confined_context(browser: Browser, server_url: str, width: int = 1280, height: int = 900) -> Confined:
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    confined = Confined(context)

    def only_the_server(route: Route) -> None:
        confined.requested.append(route.request.url)
        if route.request.url.startswith(server_url + "/"):
            route.continue_()
        else:
            confined.elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    return confined
