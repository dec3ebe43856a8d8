"""`GET /console`: the operators' page: counts by status, a search whose keys stay in the URL, the matching sagas with
their actions, and a bulk retry that shows its dry-run count before it starts anything.

Rendered on the server from what `GET /sagas` and `GET /sagas/stats` answer, so that it needs nothing but the API;
a small inline script sends the actions to the API's own routes. Every URL in the page is relative, so that it works
under API Gateway's stage path (`/api/console`) and behind `make console`'s signing proxy. Every value is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from chalicelib.domain.contracts import SagaStatus
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.presentation.saga_page import STYLE as SAGA_PAGE_STYLE

FILTER_KEYS = tuple(SagaFilter.model_fields)
FORM_KEYS = (*FILTER_KEYS, "limit")
PLACEHOLDERS = {
    "status": "FAILED,RUNNING",
    "type": "purchase or return",
    "created_after": "2026-12-06T10:00:00Z",
    "created_before": "2026-12-06T11:00:00Z",
    "limit": "20",
}
ACTIONS: dict[str, tuple[str, ...]] = {"FAILED": ("retry", "resolve"), "RUNNING": ("retry", "cancel")}
"""What an operator may do to a saga in each status; the API still decides (a RUNNING saga's retry is a 409 while
its execution lives)."""
STYLE = (
    SAGA_PAGE_STYLE
    + """
.counts a{display:inline-block;margin:0 12px 8px 0;text-decoration:none;color:inherit}
form.search label{display:inline-block;margin:0 12px 8px 0}form.search input{width:11em}
.sagas td{white-space:nowrap}.note{width:12em}#message{font-weight:bold}#message.error{color:#b91c1c}
"""
)
SCRIPT = """
const message = document.getElementById("message");
function say(text, error) { message.textContent = text; message.className = error ? "error" : ""; }
async function send(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body || {})});
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.message || ("HTTP " + response.status));
  return answer;
}
document.querySelectorAll("tr[data-saga] button[data-action]").forEach(button => button.addEventListener("click",
  async () => {
    const row = button.closest("tr"), saga = row.dataset.saga, action = button.dataset.action;
    const body = action === "resolve" ? {note: row.querySelector("input.note").value} : {};
    try {
      const answer = await send("sagas/" + saga + "/" + action, body);
      row.querySelector("td.saga-status span").textContent = answer.status;
      row.querySelector("td.saga-status span").className = "status " + answer.status;
      row.querySelector("td.actions").textContent = "";
      say(action + " of saga " + saga + ": " + answer.status);
    } catch (error) { say(action + " of saga " + saga + " refused: " + error.message, true); }
  }));
document.querySelector("form.search").addEventListener("submit", event => {
  event.target.querySelectorAll("input").forEach(input => { input.disabled = !input.value; });
});
const bulk = document.getElementById("bulk"), confirmBulk = document.getElementById("bulk-confirm");
const filter = JSON.parse(bulk.dataset.filter);
bulk.addEventListener("click", async () => {
  try {
    const dry = await send("sagas/retry", {filter: filter, dry_run: true});
    confirmBulk.dataset.matched = dry.matched;
    confirmBulk.textContent = "Retry these " + dry.matched + " sagas";
    confirmBulk.hidden = dry.matched === 0;
    say(dry.matched + " sagas match this search" + (dry.matched ? ": confirm to retry them" : ""));
  } catch (error) { say("bulk retry refused: " + error.message, true); }
});
confirmBulk.addEventListener("click", async () => {
  confirmBulk.hidden = true;
  try {
    const started = await send("sagas/retry", {filter: filter});
    say("operation " + started.operation_id + " retries " + started.matched + " sagas (operations/"
        + started.operation_id + ")");
  } catch (error) { say("bulk retry refused: " + error.message, true); }
});
"""


def console_url(query: Mapping[str, str]) -> str:
    """The console showing `query` (relative, as every URL of the page)."""
    given = {key: value for key, value in query.items() if value}
    return "console" + (f"?{urlencode(given)}" if given else "")


def age(moment: str, now: datetime) -> str:
    """How long before `now` `moment` (ISO 8601; UTC without an offset) was."""
    then = datetime.fromisoformat(moment)
    return duration((now - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds())


def duration(seconds: float) -> str:
    """`seconds` in its two largest units: `3d 4h`, `5m 2s`, `0s`."""
    left, parts = max(0, int(seconds)), list[str]()
    for name, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or parts:
            parts.append(f"{left // size}{name}")
            left %= size
    return " ".join(parts[:2]) or "0s"


def render_console(
    query: Mapping[str, str], stats: dict[str, Any], items: list[dict[str, Any]], next_cursor: str | None, now: datetime
) -> str:
    """The console for the raw `query` string's keys (already validated), the `stats` and the page of `items`."""
    kept = {key: query[key] for key in FORM_KEYS if query.get(key)}
    counts = "".join(
        f'<a href="{escape(console_url(kept | {"status": status}))}">'
        f'<span class="status {status}">{status}</span> {stats["by_status"].get(status, 0)}</a>'
        for status in SagaStatus
    )
    oldest = stats["oldest_running_age_seconds"]
    form = "".join(
        f'<label>{key} <input name="{key}" value="{escape(kept.get(key, ""))}" '
        f'placeholder="{escape(PLACEHOLDERS.get(key, ""))}"></label>'
        for key in FORM_KEYS
    )
    rows = "".join(_row(item, now) for item in items) or '<tr><td colspan="10">no saga matches</td></tr>'
    more = (
        f'<p><a id="next" href="{escape(console_url(kept | {"cursor": next_cursor}))}">next page</a></p>'
        if next_cursor
        else ""
    )
    bulk_filter = json.dumps({key: kept[key] for key in FILTER_KEYS if key in kept})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Saga console</title><style>{STYLE}</style></head>
<body>
<h1>Saga console</h1>
<p class="counts">every saga: {counts}<a href="console">all {stats["total"]}</a></p>
<p>stuck (as the reconciler sees them): <b id="stuck">{stats["stuck"]}</b> · oldest RUNNING:
<b id="oldest">{"none" if oldest is None else duration(oldest)}</b></p>
<form class="search" method="get" action="console">{form}<button type="submit">Search</button>
<a href="console">clear</a></form>
<p><button id="bulk" type="button" data-filter="{escape(bulk_filter)}">Retry every saga of this search…</button>
<button id="bulk-confirm" type="button" hidden></button> <span id="message" role="status"></span></p>
<table class="sagas"><tr><th>saga</th><th>type</th><th>status</th><th>customer</th><th>order</th><th>sku</th>
<th>failed step</th><th>age</th><th>last change</th><th>actions</th></tr>
{rows}</table>
{more}
<script>{SCRIPT}</script>
</body></html>
"""


def _row(item: dict[str, Any], now: datetime) -> str:
    saga_id, status = escape(item["saga_id"]), escape(item["status"])
    actions = "".join(_action(name) for name in ACTIONS.get(item["status"], ()))
    cells = "".join(f"<td>{escape(item[key] or '')}</td>" for key in ("customer_id", "order_id", "sku", "step"))
    return (
        f'<tr data-saga="{saga_id}"><td><a href="sagas/{saga_id}/view">{saga_id}</a></td>'
        f"<td>{escape(item['type'])}</td>"
        f'<td class="saga-status"><span class="status {status}">{status}</span></td>{cells}'
        f"<td>{age(item['created_at'], now)}</td><td>{age(item['updated_at'], now)}</td>"
        f'<td class="actions">{actions}</td></tr>\n'
    )


def _action(name: str) -> str:
    note = '<input class="note" placeholder="note (why it is closed)" maxlength="500"> ' if name == "resolve" else ""
    return f'{note}<button type="button" data-action="{name}">{name}</button> '
