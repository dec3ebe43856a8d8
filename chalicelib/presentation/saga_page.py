"""`GET /sagas/{id}/view`: one HTML page with a saga's status, steps, its path on the state machine, history.

Self-contained (inline SVG and CSS), so it reads without any internet access. Every value is escaped.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from chalicelib.domain.contracts import state_of_step
from chalicelib.presentation.diagram import render
from chalicelib.presentation.saga_views import event_message

STATEMACHINES = Path(__file__).resolve().parents[2] / "statemachines"
OUTCOME_STATES = {
    "COMPLETED": (("Completed", "SUCCEEDED"),),
    "REJECTED": (("Rejected", "SUCCEEDED"),),
    "COMPENSATED": (("Compensated", "SUCCEEDED"),),
    # A cancelled saga's execution ends as a compensated one's: its compensations ran to their end.
    "CANCELLED": (("Compensated", "SUCCEEDED"),),
    "FAILED": (("CompensationFailed", "FAILED"), ("Failed", "FAILED")),
    # An operator closed the FAILED saga by hand: its execution's path is the one that failed.
    "RESOLVED": (("CompensationFailed", "FAILED"), ("Failed", "FAILED")),
}
STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#1f2937}
table{border-collapse:collapse;margin:12px 0 24px}td,th{border:1px solid #d1d5db;padding:4px 8px;text-align:left}
th{background:#f3f4f6}.status{padding:2px 8px;border-radius:10px;background:#e5e7eb;font-weight:bold}
.COMPLETED{background:#dcfce7}.COMPENSATED,.REJECTED,.CANCELLED{background:#fef3c7}.FAILED{background:#fee2e2}
.RESOLVED{background:#e0e7ff}
pre{background:#f9fafb;padding:8px;white-space:pre-wrap}.history td:first-child{white-space:nowrap}
"""


@cache
def definition(saga_type: str) -> dict[str, Any]:
    return dict(json.loads((STATEMACHINES / f"{saga_type}_saga.asl.json").read_text()))


def path_of(view: dict[str, Any]) -> dict[str, str]:
    """How the saga met each state: SUCCEEDED, RETRIED (succeeded after failing) or FAILED."""
    met = {}
    for step in view["steps"]:
        if step["status"] == "FAILED":
            met[state_of_step(step["name"])] = "FAILED"
        else:
            met[state_of_step(step["name"])] = "RETRIED" if step["attempts"] > 1 else "SUCCEEDED"
    for state, how in OUTCOME_STATES.get(view["status"], ()):
        met[state] = how
    return met


def render_page(view: dict[str, Any], events: list[dict[str, Any]]) -> str:
    title = f"{view['type']} saga {view['saga_id']}"
    svg = render(definition(view["type"]), f"{view['type'].capitalize()} saga: the path this saga took", path_of(view))
    steps = "".join(
        f"<tr><td>{escape(s['name'])}</td><td>{escape(s['action'])}</td><td>{escape(s['status'])}</td>"
        f"<td>{s['attempts']}</td><td>{escape(str((s['error'] or {}).get('type') or ''))}</td>"
        f"<td>{escape(str((s['error'] or {}).get('message') or ''))}</td></tr>"
        for s in view["steps"]
    )
    history = "".join(
        f"<tr><td>{escape(str(e['time']))}</td><td>{escape(e['step'])}</td><td>{escape(e['action'])}</td>"
        f"<td>{escape(e['status'])}</td><td>{e['attempt']}</td><td>{escape(e['error_type'] or '')}</td>"
        f"<td>{escape(event_message(e) or '')}</td></tr>"
        for e in events
    )
    status = escape(view["status"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)} <span class="status {status}">{status}</span></h1>
<p>created {escape(str(view["created_at"]))} · updated {escape(str(view["updated_at"]))}</p>
<h2>Request</h2><pre>{escape(json.dumps(view["input"], indent=2))}</pre>
<h2>Result</h2><pre>{escape(json.dumps(view["result"], indent=2))}</pre>
<h2>Steps</h2>
<table><tr><th>step</th><th>action</th><th>status</th><th>attempts</th><th>error</th><th>message</th></tr>{steps}</table>
<h2>Path</h2>
{svg}
<h2>History</h2>
<table class="history">
<tr><th>time</th><th>step</th><th>action</th><th>status</th><th>attempt</th><th>error</th><th>message</th></tr>
{history}</table>
</body></html>
"""
