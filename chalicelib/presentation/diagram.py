"""An SVG picture of a state machine, drawn from its ASL: steps, compensations and outcomes in three rows,
Next and Catch edges labelled, retries noted on each step. No drawing tool is needed."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from chalicelib.domain.contracts import COMPENSATIONS, step_of_state

BOX_WIDTH, BOX_HEIGHT, COLUMN, MARGIN = 170, 54, 215, 30
ROWS = {"step": 50, "compensation": 250, "outcome": 450}
STYLE = {
    "step": ("#e8f0fe", "#1a56db"),
    "compensation": ("#fff4e5", "#c2410c"),
    "Succeed": ("#e7f6ec", "#15803d"),
    "Fail": ("#fdecec", "#b91c1c"),
}
TERMINAL_ORDER = ("Rejected", "Compensated", "CompensationFailed", "Failed", "Completed")
RECORDS_FAILURE = "CompensationFailed"
"""The Task on the way to the Fail state: drawn with the outcomes, since it only records one."""
# A run's path: a ring around each state it met, coloured by how; states and edges off the path are faded.
RING = {"SUCCEEDED": "#22c55e", "RETRIED": "#f59e0b", "FAILED": "#ef4444"}
OFF_PATH_OPACITY = 0.35


def _kind(name: str, state: dict[str, Any]) -> str:
    if state["Type"] in ("Succeed", "Fail") or name == RECORDS_FAILURE:
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
    if highlight:
        parts.append(_legend(width - MARGIN))
    for source, target, label in _edges(states):
        faded = bool(highlight) and not (source in highlight and target in highlight)
        parts.append(_edge(positions[source], positions[target], label, faded))
    for name, state in states.items():
        parts.append(_box(name, state, positions[name], highlight.get(name), faded=bool(highlight)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _legend(right: int) -> str:
    keys = "".join(
        f'<tspan dx="12" fill="{colour}" font-size="14">\u25cf</tspan><tspan dx="3">{how.lower()}</tspan>'
        for how, colour in RING.items()
    )
    faded = '<tspan dx="12">faded: not taken</tspan>'
    return f'<text x="{right}" y="24" text-anchor="end" font-size="11" fill="#444">{keys}{faded}</text>'


def _edge(source: tuple[int, int], target: tuple[int, int], label: str, faded: bool = False) -> str:
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
    opacity = f' opacity="{OFF_PATH_OPACITY}"' if faded else ""
    line = (
        f'<line x1="{start[0]:.0f}" y1="{start[1]:.0f}" x2="{end[0]:.0f}" y2="{end[1]:.0f}" stroke="{color}" '
        f'stroke-width="1.4"{dash} marker-end="url(#arrow)"{opacity}/>'
    )
    if not label:
        return line
    # Labels sit a third of the way along, near the state whose error they name, written along their edge
    # (turned to read left to right) on a white outline: catch edges cross, and level labels ran into each other.
    mx, my = start[0] + (end[0] - start[0]) / 3, start[1] + (end[1] - start[1]) / 3
    angle = math.degrees(math.atan2(end[1] - start[1], end[0] - start[0]))
    if angle > 90 or angle < -90:
        angle -= math.copysign(180, angle)
    return line + (
        f'<text x="{mx:.0f}" y="{my:.0f}" dy="-4" text-anchor="middle" '
        f'transform="rotate({angle:.1f} {mx:.0f} {my:.0f})" fill="{color}" font-size="10" '
        f'stroke="#fff" stroke-width="3" paint-order="stroke"{opacity}>'
        f"{escape(label)}</text>"
    )


def _box(name: str, state: dict[str, Any], position: tuple[int, int], seen: str | None, faded: bool = False) -> str:
    """One state. `faded` (a run is drawn) dims it unless the run met it (`seen`), which rings it instead."""
    x, y = position
    kind = _kind(name, state)
    fill, stroke = STYLE["Fail" if name == RECORDS_FAILURE else state["Type"] if kind == "outcome" else kind]
    width = 3.5 if seen else 1.5
    if seen == "FAILED":
        stroke = "#b91c1c"
    retries = [f"retry {r['MaxAttempts']}x" for r in state.get("Retry", [])]
    caption = {"step": "step", "compensation": "compensation"}.get(kind, state["Type"].lower())
    if name == RECORDS_FAILURE:
        caption = "records FAILED"
    note = " · ".join([caption, *retries] + ([seen.lower()] if seen else []))
    rx = 8 if kind != "outcome" or state["Type"] == "Task" else 26
    classes = f"state {kind}" + (f" on-path {seen.lower()}" if seen else " off-path" if faded else "")
    opacity = f' opacity="{OFF_PATH_OPACITY}"' if faded and not seen else ""
    ring = (
        f'<rect class="ring" x="{x - 6}" y="{y - 6}" width="{BOX_WIDTH + 12}" height="{BOX_HEIGHT + 12}" '
        f'rx="{rx + 6}" fill="none" stroke="{RING[seen]}" stroke-width="5"/>'
        if seen
        else ""
    )
    return (
        f'<g class="{classes}"{opacity} data-state="{escape(name)}">{ring}'
        f'<rect class="box" x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="{rx}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"/>'
        f'<text x="{x + BOX_WIDTH / 2:.0f}" y="{y + 24}" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        f'<text x="{x + BOX_WIDTH / 2:.0f}" y="{y + 41}" text-anchor="middle" font-size="10" fill="#444">'
        f"{escape(note)}</text></g>"
    )
