"""The sentences of docs/performance.md that quote a figure, rendered from the results file as its tables are
(`make docs`): a fresh `make bench` rewrites them with its tables, so no sentence keeps a figure of an older run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.__main__ import (
    COLD_TARGET,
    FLOOR_SHARE_TARGET,
    HOT_OVER_SPREAD_TARGET,
    IMPORT_FLOOR_TARGET,
    RESULTS,
    RUNTIME_ADDED_TARGET_MS,
    SCALE_TARGET,
    SNAPSTART_TARGET,
    STEP_TARGET,
)
from bench.report import load

STEPS_OF_A_PURCHASE = ("reserve_stock", "process_payment", "confirm_sale")


def _span(values: Iterable[float], digits: int = 2, unit: str = "") -> str:
    ordered = sorted(values)
    low, high = f"{ordered[0]:,.{digits}f}", f"{ordered[-1]:,.{digits}f}"
    return f"{low}{unit}" if low == high else f"{low} to {high}{unit}"


def _count(met: int, total: int) -> str:
    if met == total:
        return "every step"
    return "no step" if met == 0 else f"{met} step{'s' if met > 1 else ''} of {total}"


def _load(results: dict[str, Any], part: str) -> str:
    low, high = results["runs"][part]["load_average"]
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} to {high:.1f}"


def main_run(path: Path = RESULTS) -> str:
    """How many calls and sagas the tables' run made."""
    results = load(path)
    calls = results["runs"]["step_overhead"]["arguments"]["calls"]
    sagas = results["runs"]["throughput"]["arguments"]["sagas"]
    return f"The run had {calls} warm calls per step and variant and {sagas} sagas per throughput run.\n"


def numbers_say(path: Path = RESULTS) -> str:
    """The findings of the step overhead, runtime, throughput and memory parts."""
    results = load(path)
    return "\n".join([_step_overhead(results), _runtime(results), _hot_product(results), *_throughput(results)]) + "\n"


def _step_overhead(results: dict[str, Any]) -> str:
    steps = results["step_overhead"]
    ratios = [row["ratio_p50"] for row in steps.values()]
    met = sum(ratio <= STEP_TARGET for ratio in ratios)
    added = [row["handler"]["p50_ms"] - row["floor"]["p50_ms"] for row in steps.values()]
    handler = [row["handler"]["p50_ms"] for row in steps.values()]
    return (
        f"- **Step overhead** is {_span(ratios)} at p50, within the target ({STEP_TARGET}) for "
        f"{_count(met, len(ratios))}: the handler machinery (event parsing, the idempotency record in Redis, the "
        f"version-checked status write, one JSON log line and one or two EMF records) costs {_span(added, 1)} ms on a "
        f"{_span(handler, 0)} ms step."
    )


def _runtime(results: dict[str, Any]) -> str:
    runtime = results["lambda_runtime"]
    added = runtime["warm_invocation"]["added_p50_ms"]
    first = runtime["first_invocation"].values()
    verdict = "met" if added <= RUNTIME_ADDED_TARGET_MS else "missed"
    return (
        f"- **The runtime** adds {added:.2f} ms to a warm invocation (target {RUNTIME_ADDED_TARGET_MS:g} ms: "
        f"{verdict}). A first invocation costs {_span((row['first_ms'] for row in first), 0)} ms, "
        f"{_span((row['ratio'] for row in first), 0)} times a warm one, of which "
        f"{_span((row['init_ms'] for row in first), 0)} ms is the handler's init in a new process."
    )


def _hot_product(results: dict[str, Any]) -> str:
    hot = results["throughput"]["hot product"]
    outcomes = ", ".join(f"{count} {status}" for status, count in hot["outcomes"].items())
    verdict = "target met" if hot["not_completed"] == 0 else "target missed"
    return (
        f"- **Hot product**: {hot['racers']} clients racing for one SKU ended {outcomes}; "
        f"{hot['not_completed']} compensated or failed for contention ({verdict}), at {hot['sagas_per_second']:.1f} "
        "sagas/s."
    )


def _throughput(results: dict[str, Any]) -> list[str]:
    runs = results["throughput"]
    concurrencies = sorted(int(n) for n in results["runs"]["throughput"]["arguments"]["concurrencies"].split(","))
    c_low, c_high = concurrencies[0], concurrencies[-1]
    low, high = (runs[f"purchase COMPLETED, concurrency {n}"] for n in (c_low, c_high))
    scale = high["ours"]["sagas_per_second"] / low["ours"]["sagas_per_second"]
    floor_scale = high["engine_floor"]["sagas_per_second"] / low["engine_floor"]["sagas_per_second"]
    share = low["ours_to_floor_sagas_per_second"]
    verdicts = (
        f"scaling from {c_low} to {c_high} {'met' if scale >= SCALE_TARGET else 'missed'}, "
        f"the share of the floor {'met' if share >= FLOOR_SHARE_TARGET else 'missed'}"
    )
    warm = {step: results["lambda_runtime"]["first_invocation"][step]["warm_ms"] for step in STEPS_OF_A_PURCHASE}
    steps = ", ".join(f"{step} {ms:.1f} ms" for step, ms in warm.items())
    ours_ms, floor_ms = low["ours"]["p50_ms"], low["engine_floor"]["p50_ms"]
    floor_low, floor_high = low["engine_floor"]["sagas_per_second"], high["engine_floor"]["sagas_per_second"]
    memory = results["peak_rss_mb"]
    return [
        f"- **Throughput targets: {verdicts}; the engine's floor says why.** The floor goes from {floor_low:.1f} "
        f"sagas/s at concurrency {c_low} to {floor_high:.1f} at {c_high} ({floor_scale:.2f} times). moto's "
        "interpreter runs every execution on a thread of one Python process and polls; on 2 cores its own work "
        "and the GIL cap it whatever the workers do. Our sagas follow that floor: at concurrency "
        f"{c_high} they run at {high['ours_to_floor_sagas_per_second']:.2f} of it, and scale {scale:.2f} times "
        f"from {c_low} to {c_high} (target {SCALE_TARGET}). The ratio measures this machine's spare cores more "
        f"than the orchestrator. At concurrency {c_low}, ours is {share:.0%} of the floor (target "
        f"{FLOOR_SHARE_TARGET:.0%}): the floor's saga takes {floor_ms:.0f} ms at p50, ours {ours_ms:.0f} ms, and "
        f"the difference is the steps' own work, measured warm above in the workers: {steps} (process_payment: a "
        "database transaction, an HTTP call to the provider, which commits to its own ledger, and a second "
        f"transaction for the intent), about {sum(warm.values()):.0f} ms of the {ours_ms - floor_ms:.0f}, while "
        f"the runtime adds {results['lambda_runtime']['warm_invocation']['added_p50_ms']:.2f} ms per invocation. "
        "Deployed, each step is its own Lambda and the engine is Step Functions, so neither cap applies there.",
        f"- **Peak RSS**: the engine {memory['engine']:,.0f} MB, its workers {memory['workers']:,.0f} MB together "
        "(as many as the concurrency needs, each a Python process with its handler's imports).",
    ]


def cold_start_load(path: Path = RESULTS) -> str:
    """The load the cold start part ran under, and how many cold starts each median has."""
    results = load(path)
    repeats = results["runs"]["cold_start"]["arguments"]["cold_repeats"]
    return (
        f"The cold start part ran at a load average of {_load(results, 'cold_start')} on this 2-core machine, "
        f"{repeats} cold starts per step: the load of the moment moves every time, the paired ratios less.\n"
    )


def options_repeats(path: Path = RESULTS) -> str:
    repeats = load(path)["runs"]["cold_start"]["arguments"]["cold_repeats"]
    return f"median of {repeats}"


def cold_start_findings(path: Path = RESULTS) -> str:
    """What the cold start table says against its two targets."""
    cold = load(path)["cold_start"]
    steps = cold["steps"].values()
    beyond = cold["beyond_import_floor"]
    loaded = ", ".join(f"`{package}`" for package in beyond["packages"]) or "nothing"
    eager_missed = [row["ratio_to_eager"] for row in steps if row["ratio_to_eager"] > COLD_TARGET]
    floor_missed = [row["ratio_to_import_floor"] for row in steps if row["ratio_to_import_floor"] > IMPORT_FLOOR_TARGET]
    total = len(cold["steps"])

    def missed(ratios: list[float]) -> str:
        return f", missed by {len(ratios)} ({_span(ratios)})" if ratios else ""

    return (
        f"- **Beyond the floor**, {beyond['step']}'s cold start loads {loaded}. The older target of {COLD_TARGET} "
        f"times the eager reference is met by {_count(total - len(eager_missed), total)}{missed(eager_missed)}: the "
        "reference is measured before the steps, not paired with them, so the load's drift over a run moves that "
        "ratio as much as anything the steps do.\n"
        f"- **The import-floor target ({IMPORT_FLOOR_TARGET}) is met by "
        f"{_count(total - len(floor_missed), total)}{missed(floor_missed)}.**\n"
    )


def snapstart_findings(path: Path = RESULTS) -> str:
    steps = load(path)["cold_start"]["steps"].values()
    snaps = [row["snapstart"] for row in steps]
    ratios = [snap["ratio_to_full_cold_path"] for snap in snaps]
    met = sum(ratio <= SNAPSTART_TARGET for ratio in ratios)
    return (
        f"The target ({SNAPSTART_TARGET}) is met by {_count(met, len(ratios))}: a restored first invocation costs "
        f"{_span(ratios)} of the full cold path ({_span((s['restored_first_invocation_ms'] for s in snaps), 0)} ms "
        f"against {_span((s['full_cold_path_ms'] for s in snaps), 0)} ms, under the load above).\n"
    )


def capacity_findings(path: Path = RESULTS) -> str:
    """What the capacity part's run says: each engine's ratio against its target, before and after buckets, and
    where the hot product's cost shows on this machine."""
    results = load(path)
    capacity = results["capacity"]
    sentences = []
    for engine, row in capacity["db"].items():
        if "skipped" in row:
            sentences.append(f"{engine} was not measured ({row['skipped']}).")
            continue
        top = str(row["at_workers"])
        layouts = row["workers"][top]
        reserve = {layout: layouts[layout]["steps"]["reserve_stock"]["p50_ms"] for layout in layouts}
        verdict = "met" if row["hot_over_spread"] >= HOT_OVER_SPREAD_TARGET else "missed"
        sentences.append(
            f"On {engine} ({row['server']}) at {top} workers, one hot product in buckets ran at "
            f"{row['hot_over_spread']:.2f} of the spread rate (target {HOT_OVER_SPREAD_TARGET}: {verdict}), "
            f"in one row at {row['hot_one_row_over_spread']:.2f}; the spread rate was "
            f"{layouts['spread']['sagas_per_second']:.1f} sagas/s, and reserve_stock's p50 was "
            f"{reserve['spread']:.0f} ms spread, {reserve['hot']:.0f} ms hot in buckets and "
            f"{reserve['hot_one_row']:.0f} ms hot in one row."
        )
    broken = [
        f"{engine} {workers} {layout}"
        for engine, row in capacity["db"].items()
        for workers, layouts in row.get("workers", {}).items()
        for layout, measured in layouts.items()
        if measured["violations"]
    ]
    sentences.append(
        "The invariants held after every run." if not broken else f"Invariants broke in: {', '.join(broken)}."
    )
    transactions = capacity["transactions_per_saga"]
    sentences.append(
        f"A saga's three steps took {transactions['total']} database transactions "
        f"({', '.join(f'{step} {n}' for step, n in transactions.items() if step != 'total')}), measured on "
        f"{capacity['machine']['cores']} cores, load average {_load(results, 'capacity')}."
    )
    return "\n".join(sentences) + "\n"
