"""docs/capacity.md's tables, rendered by `make docs` (cog) from the results file `make bench` writes and from
bench/aws_quotas.py: a new run or a corrected quota rewrites them, and a test fails when the page is stale."""

from __future__ import annotations

from pathlib import Path

from bench import aws_quotas, capacity_model
from bench.__main__ import RESULTS
from bench.capacity_model import NOT_MEASURED, PATH, Resource
from bench.report import load, provenance
from infra.reports import cost


def _number(value: float) -> str:
    if value == float("inf"):
        return "never"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"


def _link(source: str) -> str:
    return f"[{source}](../{source})" if source == capacity_model.TEMPLATE else f"[source]({source})"


def _measured_parts(results: dict[str, object]) -> list[str]:
    parts = ["footprint", "cost", "step_overhead"]
    return parts + (["capacity"] if "capacity" in results else [])


def per_saga(path: Path = RESULTS) -> str:
    """What one completed purchase asks of each service, with where each figure comes from."""
    results = load(path)
    costs = capacity_model.saga_costs(results)
    gb_seconds = costs.lambda_seconds * cost.LAMBDA_MEMORY_GB
    footprint = results["footprint"]
    rows = [
        ("state transitions (Standard, as billed)", costs.transitions, "`make bench` cost part (execution histories)"),
        ("Lambda invocations", costs.invocations, "the same"),
        ("Lambda seconds (task time, an upper bound)", costs.lambda_seconds, "the same"),
        (f"Lambda GB-seconds at {cost.LAMBDA_MEMORY_GB * 1024:.0f} MB", gb_seconds, "the same"),
        ("process_payment, warm p50 (s)", costs.payment_ms / 1000, "step overhead part (local provider)"),
        ("database transactions", costs.db_transactions, "footprint part (`pg_stat_database`)"),
        ("database time executing them (ms)", costs.db_active_ms, "the same (`active_time`)"),
        ("Redis commands", costs.redis_commands, "footprint part (`INFO commandstats`)"),
        ("payment provider calls", costs.provider_calls, "footprint part (the provider's request log)"),
        ("API requests", capacity_model.API_REQUESTS_PER_SAGA, "the POST; each poll of `GET /sagas/{id}` adds one"),
    ]
    table = ["| per completed purchase | measured | from |", "| --- | ---: | --- |"]
    table += [f"| {name} | {value:,.3g} | {source} |" for name, value, source in rows]
    commands = ", ".join(
        f"{name.upper()} {calls:g}" for name, calls in footprint[PATH]["redis_commands_by_name"].items()
    )
    returned = footprint["return COMPLETED"]
    return (
        f"{provenance(results, ['footprint', 'cost', 'step_overhead'])}\n\n"
        + "\n".join(table)
        + f"\n\nThe Redis commands are {commands}. A completed return costs "
        f"{returned['db_transactions']:g} transactions, {returned['redis_commands']:g} Redis commands and "
        f"{returned['provider_calls']:g} provider call ({footprint['sagas_per_path']} sagas per path).\n"
    )


def database_tier(path: Path = RESULTS) -> str:
    """The database tier's throughput per core on each engine the capacity part ran on, or why it is missing."""
    results = load(path)
    engines = results.get("capacity", {}).get("db", {})
    tiers = {engine: capacity_model.database_tier(results, engine) for engine in engines}
    if capacity_model.database_tier(results) is None:
        return f"Database tier: {NOT_MEASURED}.\n"
    table = [
        "| engine | sagas/s per core, 1,000 SKUs | per core, one hot SKU | one row per product, all cores "
        "| hot over spread, 64 workers |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for engine, tier in tiers.items():
        if tier is None:
            continue
        one_row = "-" if tier.one_row_sagas_per_second is None else f"{tier.one_row_sagas_per_second:,.1f}"
        ratio = engines[engine].get("hot_over_spread")
        table.append(
            f"| {engine} | {tier.spread_per_core:,.1f} | {tier.hot_per_core:,.1f} | {one_row} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    cores = next(tier.cores for tier in tiers.values() if tier is not None)
    return (
        f"{provenance(results, ['capacity'])}\n\n"
        + "\n".join(table)
        + f"\n\nThe best of the worker counts, over the machine's {cores} cores; the model uses "
        f"{capacity_model.DATABASE_ENGINE}'s. With one row per product every reservation of a flash sale waits for "
        "that row's lock, so its rate stops growing with the instance; here the steps' own work on the machine's "
        "cores was the limit first, so the one-row figure is a floor of that ceiling, not the ceiling.\n"
    )


def quotas() -> str:
    """Every published limit the model uses, with its page."""
    table = ["| limit | default | burst | can be raised | note |", "| --- | ---: | ---: | --- | --- |"]
    for q in aws_quotas.QUOTAS:
        burst = f"{q.burst:,.0f}" if q.burst is not None else "-"
        adjustable = "yes" if q.adjustable else "no"
        table.append(f"| [{q.name}]({q.source}) | {q.value:,.0f} {q.unit} | {burst} | {adjustable} | {q.note} |")
    return f"Read on {aws_quotas.READ_ON}.\n\n" + "\n".join(table) + "\n"


def ceilings(path: Path = RESULTS) -> str:
    """Each resource's demand per saga and the rate at which it saturates, the lowest first."""
    results = load(path)
    every = capacity_model.resources(
        capacity_model.saga_costs(results), capacity_model.database_tier(results), capacity_model.stack_defaults()
    )
    ordered = sorted(every, key=lambda r: (r.ceiling is None, r.ceiling or 0))
    table = ["| resource | per saga/s | limit | saturates at (sagas/s) | knob |", "| --- | ---: | ---: | ---: | --- |"]
    for resource in ordered:
        per_saga = NOT_MEASURED if resource.per_saga is None else _number(resource.per_saga)
        ceiling = NOT_MEASURED if resource.ceiling is None else _number(resource.ceiling)
        table.append(
            f"| {resource.name} ({_link(resource.source)}) | {per_saga} | {resource.limit:,.0f} {resource.unit} "
            f"| {ceiling} | {resource.knob} |"
        )
    return f"{provenance(results, _measured_parts(results))}\n\n" + "\n".join(table) + "\n"


def rates(path: Path = RESULTS) -> str:
    """At 10, 100, 1,000 and 10,000 sagas/s: what breaks first on the way there, its knob, the cost per month."""
    results = load(path)
    table = [
        "| sagas/s | breaks first | its knob | then | Lambda's ramp from cold | $/month Standard | $/month Express |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in capacity_model.rate_rows(results):
        if row.new:
            first, knob = f"{row.new[0].name} ({_share(row.new[0], row.rate)})", row.new[0].knob
        else:
            nothing = "nothing new" if row.saturated else "nothing"
            first, knob = f"{nothing}; the closest is {row.closest.name} ({_share(row.closest, row.rate)})", "-"
        then = "; ".join(f"{r.name} ({_share(r, row.rate)}): {r.knob}" for r in row.new[1:]) or "-"
        table.append(
            f"| {row.rate:,} | {first} | {knob} | {then} | {row.cold_ramp_seconds:,.1f} s "
            f"| {row.standard_per_month:,.0f} | {row.express_per_month:,.0f} |"
        )
    tier = capacity_model.database_tier(results)
    missing = "" if tier else f"\nThe database tier is not in these rows: {NOT_MEASURED}.\n"
    return "\n".join(table) + "\n" + missing


def _share(resource: Resource, rate: int) -> str:
    demand = resource.demand(rate)
    if demand is None:
        return "?"
    share = demand / resource.limit
    if share < 1:
        return f"{share:.0%} of its limit"
    return "at its limit" if share == 1 else f"{share:,.2g} times its limit"


def findings(path: Path = RESULTS) -> str:
    """What the rows say, one sentence per rate, and what the database needs, from the same figures."""
    results = load(path)
    rows = capacity_model.rate_rows(results)
    lines = []
    for row in rows:
        if not row.saturated:
            lines.append(
                f"- **At {row.rate:,} sagas/s nothing reaches its limit**; the closest is {row.closest.name}, "
                f"at {_share(row.closest, row.rate)}."
            )
        elif row.new:
            reached = ", then ".join(f"{r.name} (at {_number(r.ceiling or 0)} sagas/s)" for r in row.new)
            lines.append(f"- **At {row.rate:,} sagas/s**, beyond what the lower rates needed: {reached}.")
        else:
            lines.append(f"- **At {row.rate:,} sagas/s** nothing is reached that a lower rate did not reach.")
    top = rows[-1]
    lines.append(
        f"- **Express would cost {top.express_per_month / top.standard_per_month:.0%} of Standard** "
        f"(${top.express_per_month:,.0f} against ${top.standard_per_month:,.0f} a month at {top.rate:,} sagas/s) "
        "and lift both Step Functions limits."
    )
    tier = capacity_model.database_tier(results)
    if tier is None:
        lines.append(f"- **The database tier** is not in the rows yet: {NOT_MEASURED}.")
    else:
        spread = ", ".join(f"{rate / tier.spread_per_core:,.1f} at {rate:,}" for rate in capacity_model.RATES)
        hot = ", ".join(f"{rate / tier.hot_per_core:,.1f} at {rate:,}" for rate in capacity_model.RATES)
        lines.append(
            f"- **The database** needs, at the measured rate per core, these cores over many SKUs: {spread} "
            f"sagas/s; for a flash sale on one SKU: {hot}."
        )
    return "\n".join(lines) + "\n"
