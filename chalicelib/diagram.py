"""An SVG picture of a state machine, drawn from its ASL: steps, compensations and outcomes in three rows,
Next and Catch edges labelled, retries noted on each step. No drawing tool is needed."""

from __future__ import annotations

from html import escape
from typing import Any

from chalicelib.contracts import COMPENSATIONS, step_of_state

BOX_WIDTH, BOX_HEIGHT, COLUMN, MARGIN = 170, 54, 215, 30
ROWS = {"step": 50, "compensation": 250, "outcome": 450}
STYLE = {
    "step": ("#e8f0fe", "#1a56db"),
    "compensation": ("#fff4e5", "#c2410c"),
    "Succeed": ("#e7f6ec", "#15803d"),
    "Fail": ("#fdecec", "#b91c1c"),
}
TERMINAL_ORDER = ("Rejected", "Compensated", "CompensationFailed", "Completed")


def _kind(name: str, state: dict[str, Any]) -> str:
    if state["Type"] in ("Succeed", "Fail"):
        return "outcome"
    return "compensation" if step_of_state(name) in COMPENSATIONS else "step"


def _edges(states: dict[str, Any]) -> list[tuple[str, str, str]]:
    edges = []
    for name, state in states.items():
        if "Next" in state:
            edges.append((name, state["Next"], ""))
        for catch in state.get("Catch", []):
            errors = ", ".join("any error" if e == "States.ALL" else e for e in catch["ErrorEquals"])
            edges.append((name, catch["Next"], errors))
    return edges


def _positions(definition: dict[str, Any]) -> dict[str, tuple[int, int]]:
    states = definition["States"]
    order: list[str] = []
    pending = [definition["StartAt"]]
    while pending:  # breadth-first from the start, following Next before Catch
        name = pending.pop(0)
        if name in order:
            continue
        order.append(name)
        state = states[name]
        pending += ([state["Next"]] if "Next" in state else []) + [c["Next"] for c in state.get("Catch", [])]
    rows: dict[str, list[str]] = {row: [] for row in ROWS}
    for name in order:
        rows[_kind(name, states[name])].append(name)
    rows["outcome"].sort(key=lambda n: TERMINAL_ORDER.index(n) if n in TERMINAL_ORDER else len(TERMINAL_ORDER))
    # Compensations sit half a column to the right, so vertical edges between the rows do not cross boxes.
    shift = {"step": 0, "compensation": COLUMN // 2, "outcome": 0}
    return {
        name: (MARGIN + shift[row] + index * COLUMN, ROWS[row])
        for row, names in rows.items()
        for index, name in enumerate(names)
    }


def render(definition: dict[str, Any], title: str, highlight: dict[str, str] | None = None) -> str:
    """SVG of `definition`. `highlight` maps state names to how a run met them: SUCCEEDED, FAILED, RETRIED."""
    states = definition["States"]
    positions = _positions(definition)
    highlight = highlight or {}
    width = MARGIN * 2 + COLUMN * max(1, *(x // COLUMN + 1 for x, _ in positions.values()))
    height = ROWS["outcome"] + BOX_HEIGHT + MARGIN + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'<text x="{MARGIN}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for source, target, label in _edges(states):
        parts.append(_edge(positions[source], positions[target], label))
    for name, state in states.items():
        parts.append(_box(name, state, positions[name], highlight.get(name)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _edge(source: tuple[int, int], target: tuple[int, int], label: str) -> str:
    (sx, sy), (tx, ty) = source, target
    start: tuple[float, float]
    end: tuple[float, float]
    if sy == ty:  # same row: side to side
        start = (sx + BOX_WIDTH, sy + BOX_HEIGHT / 2) if tx > sx else (sx, sy + BOX_HEIGHT / 2)
        end = (tx, ty + BOX_HEIGHT / 2) if tx > sx else (tx + BOX_WIDTH, ty + BOX_HEIGHT / 2)
    else:
        start = (sx + BOX_WIDTH / 2, sy + BOX_HEIGHT)
        end = (tx + BOX_WIDTH / 2, ty) if ty > sy else (tx + BOX_WIDTH / 2, ty + BOX_HEIGHT)
    color = "#b91c1c" if label else "#555"
    dash = ' stroke-dasharray="5,3"' if label else ""
    line = (
        f'<line x1="{start[0]:.0f}" y1="{start[1]:.0f}" x2="{end[0]:.0f}" y2="{end[1]:.0f}" stroke="{color}" '
        f'stroke-width="1.4"{dash} marker-end="url(#arrow)"/>'
    )
    if not label:
        return line
    # Labels sit a third of the way along, near the state whose error they name.
    mx, my = start[0] + (end[0] - start[0]) / 3, start[1] + (end[1] - start[1]) / 3
    return line + f'<text x="{mx + 4:.0f}" y="{my:.0f}" fill="{color}" font-size="10">{escape(label)}</text>'


def _box(name: str, state: dict[str, Any], position: tuple[int, int], seen: str | None) -> str:
    x, y = position
    kind = _kind(name, state)
    fill, stroke = STYLE[state["Type"] if kind == "outcome" else kind]
    width = {"SUCCEEDED": 3.5, "RETRIED": 3.5, "FAILED": 3.5}.get(seen or "", 1.5)
    if seen == "FAILED":
        stroke = "#b91c1c"
    retries = [f"retry {r['MaxAttempts']}x" for r in state.get("Retry", [])]
    caption = {"step": "step", "compensation": "compensation"}.get(kind, state["Type"].lower())
    note = " · ".join([caption, *retries] + ([seen.lower()] if seen else []))
    rx = 8 if kind != "outcome" else 26
    return (
        f'<g class="state {kind}" data-state="{escape(name)}">'
        f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="{rx}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"/>'
        f'<text x="{x + BOX_WIDTH / 2:.0f}" y="{y + 24}" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        f'<text x="{x + BOX_WIDTH / 2:.0f}" y="{y + 41}" text-anchor="middle" font-size="10" fill="#444">'
        f"{escape(note)}</text></g>"
    )
