"""docs/performance.md's tables, rendered from the results file `make bench` writes (bench/results/latest.json):
`make docs` runs these between the page's cog markers, so the page shows what was measured, when, by which
command and under which load, and a test fails when the page and the file disagree."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.__main__ import (
    RESULTS,
    capacity_lines,
    cold_start_lines,
    cost_lines,
    listing_lines,
    runtime_lines,
    snapstart_lines,
    step_overhead_lines,
    throughput_lines,
)

Lines = Callable[[dict[str, Any]], list[str]]
TABLES: dict[str, tuple[str, Lines]] = {
    "step_overhead": ("step_overhead", lambda results: step_overhead_lines(results["step_overhead"])),
    "lambda_runtime": ("lambda_runtime", lambda results: runtime_lines(results["lambda_runtime"])),
    "throughput": ("throughput", lambda results: throughput_lines(results["throughput"], results["peak_rss_mb"])),
    "cost": ("cost", cost_lines),
    "cold_start": ("cold_start", lambda results: cold_start_lines(results["cold_start"])),
    "snapstart": ("cold_start", lambda results: snapstart_lines(results["cold_start"])),
    "listing": ("listing", lambda results: listing_lines(results["listing"])),
    "capacity": ("capacity", lambda results: capacity_lines(results["capacity"])),
}
"""A table of the page -> the bench part that measured it, and its lines as `make bench` prints them."""


def load(path: Path = RESULTS) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(path.read_text())
    return results


def tables(names: Sequence[str], path: Path = RESULTS) -> str:
    """The tables `names`, as `make bench` prints them, in one fenced block, after the line that dates them."""
    results = load(path)
    lines = [line for name in names for line in TABLES[name][1](results)]
    parts = list(dict.fromkeys(TABLES[name][0] for name in names))
    return f"{provenance(results, parts)}\n\n```\n" + "\n".join(lines).strip("\n") + "\n```\n"


def provenance(results: dict[str, Any], parts: Sequence[str]) -> str:
    """When, by which command, on which machine and backend, and under which load `parts` were measured."""
    runs = [results["runs"][part] for part in parts]
    by_run: dict[str, list[str]] = {}
    for part, run in zip(parts, runs, strict=True):
        low, high = run["load_average"]
        load_text = f"load average {low:.1f}" + (f" to {high:.1f}" if f"{high:.1f}" != f"{low:.1f}" else "")
        when = run["measured_at"].replace("T", " ").replace("+00:00", " UTC")
        by_run.setdefault(f"by `{run['command']}` on {when} ({load_text})", []).append(part.replace("_", " "))
    where = "; ".join(sorted({f"{run['machine']}, against {run['backend']}" for run in runs}))
    measured = "; ".join(f"{', '.join(names)} {run}" for run, names in by_run.items())
    return f"Measured on {where}: {measured}."


def options_table(path: Path = RESULTS) -> str:
    """The cold path's options, each timed alone in a fresh interpreter, as a Markdown table."""
    results = load(path)
    rows = ["| for | option | ms |", "| --- | --- | ---: |"]
    for name, ms in results["cold_start"]["options_ms"].items():
        kind, option = name.split(": ", 1)
        rows.append(f"| {kind} | {option} | {ms:.0f} |")
    return f"{provenance(results, ['cold_start'])}\n\n" + "\n".join(rows) + "\n"


def listing_plans(path: Path = RESULTS) -> str:
    """Each search case's plan on each engine, as the listing part explained it (docs/saga-search.md)."""
    results = load(path)
    listing = results["listing"]
    sections = [provenance(results, ["listing"])]
    for engine, measured in listing["engines"].items():
        if "cases" not in measured:
            continue
        command = "EXPLAIN" if engine == "MySQL" else "EXPLAIN (COSTS OFF)"
        sections.append(f"### {engine} ({measured['server']}): `{command}`")
        for case, row in measured["cases"].items():
            sections.append(f"`{case}` ({row['found']} found):\n\n```\n" + "\n".join(row["plan"]) + "\n```")
    return "\n\n".join(sections) + "\n"
