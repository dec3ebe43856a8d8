"""`make bench`: step overhead against its floor, cold start against two references, throughput against the
engine's floor, what one saga asks of the database, Redis and the provider (footprint), transitions and cost per
saga path, peak memory. Writes bench/results/latest.json (each part with when, by which command, on which machine
and under which load it was measured), prints a table; `make docs` renders docs/performance.md's and
docs/capacity.md's tables from that file.

Uses DATABASE_URL/REDIS_URL when set (PostgreSQL or MySQL); else PostgreSQL and Redis on 127.0.0.1 when they
answer (a `saga_bench` database, Redis db 14); else the embedded default, and says which it used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.adapters import database, idempotency, saga_cache
from chalicelib.observability import telemetry
from chalicelib.service import products
from chalicelib.settings import database_engine, get_settings
from infra.engine import preflight
from infra.engine.embedded_redis import embedded_redis
from infra.engine.local_engine import LocalEngine
from infra.reports import cost
from payment_provider.launcher import start_provider

REPORT = sys.stdout

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
LOCAL_POSTGRES = "postgresql+pg8000://postgres@127.0.0.1:5432/"
LOCAL_REDIS = "redis://127.0.0.1:6379/14"
STEP_TARGET, COLD_TARGET = 1.3, 0.5
IMPORT_FLOOR_TARGET, SNAPSTART_TARGET = 1.2, 0.2
SECTIONS = ("step_overhead", "cold_start", "lambda_runtime", "throughput", "footprint", "cost", "listing", "capacity")
RUNTIME_ADDED_TARGET_MS, SCALE_TARGET, FLOOR_SHARE_TARGET = 2.0, 1.5, 0.7
HOT_OVER_SPREAD_TARGET, CAPACITY_SAGAS = 0.7, 100


def choose_backend(stack: ExitStack) -> str:
    """Local PostgreSQL and Redis when both answer, else the embedded default (its Redis lives in `stack`)."""
    settings = get_settings()
    if settings.database_url or settings.redis_url:
        preflight.check_stores()
    else:
        try:
            import redis
            from sqlalchemy import create_engine, text

            redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=1).ping()
            admin = create_engine(LOCAL_POSTGRES + "postgres", isolation_level="AUTOCOMMIT", hide_parameters=True)
            with admin.connect() as connection:
                if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = 'saga_bench'")).first():
                    connection.execute(text("CREATE DATABASE saga_bench"))
            admin.dispose()
            settings.database_url, settings.redis_url = LOCAL_POSTGRES + "saga_bench", LOCAL_REDIS
        except Exception as error:  # any failure means no local servers: use the embedded default
            print(
                f"PostgreSQL/Redis on 127.0.0.1 not reachable ({error}); using the embedded default.",
                file=REPORT,
                flush=True,
            )
    if not settings.effective_redis_url:
        settings.redis_url = os.environ["REDIS_URL"] = stack.enter_context(embedded_redis())
    if not settings.payment_provider_url:  # the steps call it, here and in the engines' workers alike
        url = settings.effective_database_url
        ledger = url if database_engine(url) != "sqlite" else None
        settings.payment_provider_url = stack.enter_context(start_provider(0, ledger)).url
    preflight.check_migrations(settings.effective_database_url)
    database.reset_engine()
    saga_cache.reset_redis()
    idempotency.reset_idempotency()
    return f"{preflight.describe_database(settings.effective_database_url)} + Redis at {settings.effective_redis_url}"


def _discard_handler_output() -> None:
    """Handlers log and emit EMF records on stdout as in Lambda, and pay for it; the report alone is shown."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    handler = telemetry.logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sink)
    sys.stdout = sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200, help="warm calls per step and variant (200)")
    parser.add_argument("--cold-repeats", type=int, default=5, help="cold starts per handler (5)")
    parser.add_argument("--sagas", type=int, default=40, help="sagas per throughput run (40)")
    parser.add_argument("--cost-count", type=int, default=10, help="sagas per path for transitions (10)")
    parser.add_argument("--concurrencies", default="1,2,4,8", help="clients at once for the throughput runs (1,2,4,8)")
    parser.add_argument(
        "--footprint-count", type=int, default=10, help="sagas per path for the per-saga footprint (10)"
    )
    parser.add_argument("--hot-racers", type=int, default=16, help="clients racing for one product (16)")
    parser.add_argument(
        "--listing-rows", type=int, default=1_000_000, help="sagas loaded for the listing part (1,000,000)"
    )
    parser.add_argument("--listing-repeats", type=int, default=30, help="timed queries per listing case (30)")
    parser.add_argument(
        "--capacity-sagas", type=int, default=CAPACITY_SAGAS, help=f"sagas per capacity run ({CAPACITY_SAGAS})"
    )
    parser.add_argument(
        "--capacity-workers", default="1,4,16,64", help="worker processes of the capacity runs (1,4,16,64)"
    )
    parser.add_argument(
        "--capacity-engines", default="postgres,mysql", help="databases the capacity part runs on (postgres,mysql)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"the parts to run, comma-separated ({','.join(SECTIONS)}); the others keep their figures in "
        "the results file",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where to write the results (bench/results/latest.json)"
    )
    args = parser.parse_args(argv)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := set(args.only) - set(SECTIONS):
        parser.error(f"--only: no part named {', '.join(sorted(unknown))} (parts: {', '.join(SECTIONS)})")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    _discard_handler_output()

    with ExitStack() as stack:
        return _run(args, choose_backend(stack), _command(sys.argv[1:] if argv is None else argv))


def _command(argv: Sequence[str]) -> str:
    """The make command that runs the bench with these arguments."""
    return f'make bench BENCH_ARGS="{" ".join(argv)}"' if argv else "make bench"


def _run(args: argparse.Namespace, backend: str, command: str) -> int:
    database.migrate()
    products.seed_catalogue()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Backend: {backend}\nMachine: {machine}", file=REPORT, flush=True)
    path = args.results.resolve()
    partial = set(args.only) != set(SECTIONS)
    results: dict[str, Any] = json.loads(path.read_text()) if partial and path.exists() else {}
    parts = [part for part in SECTIONS if part in args.only]
    for number, part in enumerate(parts, start=1):
        print(f"{number}/{len(parts)} {part.replace('_', ' ')} ...", file=REPORT, flush=True)
        measured_at, load_before = datetime.now(UTC).isoformat(timespec="minutes"), os.getloadavg()[0]
        results |= _measure(part, args)
        arguments = {name: value for name, value in vars(args).items() if name not in ("only", "results")}
        run: dict[str, Any] = {"measured_at": measured_at, "command": command, "backend": backend, "machine": machine}
        run["arguments"] = arguments
        results.setdefault("runs", {})[part] = run | {"load_average": [load_before, os.getloadavg()[0]]}
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results, parts), file=REPORT, flush=True)
    written = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"written to {written}", file=REPORT, flush=True)
    return 0


def _measure(part: str, args: argparse.Namespace) -> dict[str, Any]:
    from bench import capacity, cold_start, footprint, lambda_runtime, listing, step_overhead, throughput

    if part == "step_overhead":
        return {"step_overhead": step_overhead.run(args.calls)}
    if part == "cold_start":
        return {"cold_start": cold_start.run(args.cold_repeats)}
    if part == "lambda_runtime":
        # A first invocation on demand (`$LATEST`): the cold_start part measures the SnapStart path.
        with LocalEngine(log_sink=lambda *_: None, snap_start=False) as engine:
            return {
                "lambda_runtime": {
                    "warm_invocation": lambda_runtime.warm_overhead(args.calls * 2),
                    "first_invocation": lambda_runtime.first_invocations(engine),
                }
            }
    if part == "listing":
        return {"listing": listing.run(args.listing_rows, args.listing_repeats)}
    if part == "footprint":
        return {"footprint": footprint.run(args.footprint_count)}
    if part == "capacity":
        workers = [int(n) for n in args.capacity_workers.split(",")]
        engines = [name.strip() for name in args.capacity_engines.split(",")]
        return {"capacity": capacity.run(args.capacity_sagas, workers, engines, _progress)}
    if part == "throughput":
        concurrencies = tuple(int(n) for n in args.concurrencies.split(","))
        load = throughput.run(args.sagas, concurrencies, args.hot_racers)
        return {"throughput": {k: v for k, v in load.items() if k != "peak_rss_mb"}, "peak_rss_mb": load["peak_rss_mb"]}
    # Only the cost part's paths inject faults; the other parts measure the path deployed stacks run, faults off
    # (with them on, every step reads its saga's faults in a transaction of its own first).
    get_settings().allow_faults = True
    paths = cost.measure_all(args.cost_count)
    return {"transitions_and_cost": [cost.as_dict(path) for path in paths], "prices_as_published": cost.PRICES_READ_ON}


def render(results: dict[str, Any], parts: Sequence[str] = SECTIONS) -> str:
    lines: list[str] = []
    if "step_overhead" in parts:
        lines += step_overhead_lines(results["step_overhead"])
    if "cold_start" in parts:
        lines += cold_start_lines(results["cold_start"]) + snapstart_lines(results["cold_start"])
    if "lambda_runtime" in parts:
        lines += runtime_lines(results["lambda_runtime"])
    if "throughput" in parts:
        lines += throughput_lines(results["throughput"], results["peak_rss_mb"])
    if "footprint" in parts:
        lines += footprint_lines(results["footprint"])
    if "cost" in parts:
        lines += cost_lines(results)
    if "listing" in parts:
        lines += listing_lines(results["listing"])
    if "capacity" in parts:
        lines += capacity_lines(results["capacity"])
    return "\n".join(lines)


def _progress(line: str) -> None:
    print(f"  {line}", file=REPORT, flush=True)


def capacity_lines(capacity: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Database tier under load: the purchase steps' transactions from worker processes, "
        f"{capacity['sagas_per_run']} sagas a run ({capacity['payment_provider']})",
        f"{'engine':<10}{'workers':>8}{'layout':>13}{'sagas/s':>9}"
        + "".join(f"{step + ' p50/p99 ms':>32}" for step in ("reserve_stock", "process_payment", "confirm_sale")),
    ]
    for engine, row in capacity["db"].items():
        if "skipped" in row:
            lines.append(f"{engine:<10}not measured ({row['skipped']})")
            continue
        for workers, layouts in row["workers"].items():
            for layout, measured in layouts.items():
                timings = "".join(f"{t['p50_ms']:>21.1f} /{t['p99_ms']:>8.1f}" for t in measured["steps"].values())
                lines.append(f"{engine:<10}{workers:>8}{layout:>13}{measured['sagas_per_second']:>9.1f}{timings}")
        lines.append(
            f"{engine} ({row['server']}) at {row['at_workers']} workers: hot / spread {row['hot_over_spread']:.2f} "
            f"(target >= {HOT_OVER_SPREAD_TARGET}, {_verdict(row['hot_over_spread'] >= HOT_OVER_SPREAD_TARGET)}), "
            f"one row per product {row['hot_one_row_over_spread']:.2f}"
        )
    lines.append(f"transactions per saga: {capacity['transactions_per_saga']}")
    return lines


def listing_lines(listing: dict[str, Any]) -> list[str]:
    engines = {name: row for name, row in listing["engines"].items() if "cases" in row}
    lines = [
        "",
        f"Saga search at {listing['rows']:,} sagas: a page of {listing['page']} through the service, "
        f"p50/p99 of {listing['repeats']} (ms), and the index its plan reads",
        *(f"{name}: {row['server']}, loaded in {row['load_seconds']:.0f} s" for name, row in engines.items()),
        *(f"{name}: not measured ({row['skipped']})" for name, row in listing["engines"].items() if "skipped" in row),
        (f"{'case':<44}" + "".join(f"{name + ' p50/p99':>22}  {'index':<36}" for name in engines)).rstrip(),
    ]
    names = next(iter(engines.values()))["cases"] if engines else {}
    for case in names:
        cells = []
        for row in engines.values():
            measured = row["cases"][case]
            timing = f"{measured['p50_ms']:.2f} / {measured['p99_ms']:.2f}"
            cells.append(f"{timing:>22}  {', '.join(measured['indexes']) or '-':<36}")
        lines.append((f"{case:<44}" + "".join(cells)).rstrip())
    for scope in ("every saga", "since halfway"):
        cells = [
            f"{row['stats'][scope]['p50_ms']:.0f} / {row['stats'][scope]['p99_ms']:.0f}" for row in engines.values()
        ]
        lines.append(f"{'stats, ' + scope:<44}" + "".join(f"{cell:>22}  {'':<36}" for cell in cells).rstrip())
    return lines


def footprint_lines(footprint: dict[str, Any]) -> list[str]:
    if "skipped" in footprint:
        return ["", f"Per-saga footprint: not measured ({footprint['skipped']})"]
    lines = [
        "",
        f"Per-saga footprint ({footprint['sagas_per_path']} sagas per path, counted at the servers)",
        f"{'path':<20}{'DB transactions':>16}{'DB active ms':>13}{'Redis commands':>15}{'Redis ms':>9}"
        f"{'provider calls':>15}",
    ]
    for path in ("purchase COMPLETED", "return COMPLETED"):
        row = footprint[path]
        lines.append(
            f"{path:<20}{row['db_transactions']:>16.1f}{row['db_active_ms']:>13.1f}{row['redis_commands']:>15.1f}"
            f"{row['redis_server_ms']:>9.2f}{row['provider_calls']:>15.1f}"
        )
    return lines


def cost_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", f"Transitions and cost per 1,000 sagas (prices as published {results['prices_as_published']})"]
    for row in results["transitions_and_cost"]:
        lines.append(
            f"{row['path']:<40}{row['transitions']:>5.1f} transitions{row['invocations']:>5.1f} invocations"
            f"  ${row['standard_per_1000']:.4f} Standard  ${row['express_per_1000']:.4f} Express"
        )
    return lines


def step_overhead_lines(step_overhead: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Step overhead (warm, in-process): handler vs floor",
        f"{'step':<18}{'handler p50/p99 ms':>20}"
        f"{'floor p50/p99 ms':>20}{'ratio p50':>10}{'ratio p99':>10}  target <= {STEP_TARGET}",
    ]
    for step, row in step_overhead.items():
        ours, base = row["handler"], row["floor"]
        lines.append(
            f"{step:<18}{ours['p50_ms']:>10.2f} /{ours['p99_ms']:>7.2f}{base['p50_ms']:>11.2f} /"
            f"{base['p99_ms']:>7.2f}{row['ratio_p50']:>10.2f}{row['ratio_p99']:>10.2f}  "
            f"{'met' if row['ratio_p50'] <= STEP_TARGET else 'MISSED'}"
        )
    return lines


def cold_start_lines(cold: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Cold start (fresh interpreter, import + init + one event): hello-world "
        f"{cold['hello_world_ms']:.0f} ms, eager reference {cold['eager_reference_ms']:.0f} ms",
        f"{'step':<18}{'ms':>8}{'x eager':>9}{'x hello':>9}{'floor ms':>10}{'x floor':>9}"
        f"  targets: <= {COLD_TARGET} x eager, <= {IMPORT_FLOOR_TARGET} x import floor",
    ]
    for step, row in cold["steps"].items():
        lines.append(
            f"{step:<18}{row['ms']:>8.0f}{row['ratio_to_eager']:>9.2f}{row['ratio_to_hello']:>9.1f}"
            f"{row['import_floor_ms']:>10.0f}{row['ratio_to_import_floor']:>9.2f}  "
            f"{_verdict(row['ratio_to_eager'] <= COLD_TARGET)}, "
            f"{_verdict(row['ratio_to_import_floor'] <= IMPORT_FLOOR_TARGET)}"
        )
    lines.append(
        "top imports (ms, self time): " + ", ".join(f"{i['package']} {i['ms']:.0f}" for i in cold["top_imports"][:8])
    )
    beyond = cold["beyond_import_floor"]
    lines.append(f"loaded by {beyond['step']} beyond its import floor: {', '.join(beyond['packages']) or 'nothing'}")
    return lines


def snapstart_lines(cold: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "SnapStart (initialised and snapshotted; then the after-restore hooks and the first event)",
        f"{'step':<18}{'restored ms':>12}{'full cold ms':>14}{'ratio':>8}  target <= {SNAPSTART_TARGET}",
    ]
    for step, row in cold["steps"].items():
        snap = row["snapstart"]
        lines.append(
            f"{step:<18}{snap['restored_first_invocation_ms']:>12.1f}{snap['full_cold_path_ms']:>14.0f}"
            f"{snap['ratio_to_full_cold_path']:>8.3f}  {_verdict(snap['ratio_to_full_cold_path'] <= SNAPSTART_TARGET)}"
        )
    return lines


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def runtime_lines(runtime: dict[str, Any]) -> list[str]:
    warm = runtime["warm_invocation"]
    lines = [
        "",
        "Lambda runtime (worker processes)",
        f"warm no-op invocation: worker p50 {warm['worker']['p50_ms']:.2f} ms (p99 {warm['worker']['p99_ms']:.2f}), "
        f"in-process p50 {warm['in_process']['p50_ms']:.3f} ms: {warm['added_p50_ms']:.2f} ms added "
        f"(target <= {RUNTIME_ADDED_TARGET_MS} ms, {_verdict(warm['added_p50_ms'] <= RUNTIME_ADDED_TARGET_MS)})",
        f"{'function':<18}{'first ms':>10}{'of it init':>12}{'warm ms':>9}{'x warm':>8}",
    ]
    for step, row in runtime["first_invocation"].items():
        lines.append(
            f"{step:<18}{row['first_ms']:>10.0f}{row['init_ms'] or 0:>12.0f}{row['warm_ms']:>9.1f}{row['ratio']:>8.1f}"
        )
    return lines


def throughput_lines(throughput: dict[str, Any], peak: dict[str, float]) -> list[str]:
    lines = [
        "",
        "Throughput on the local engine (each step in a worker process)",
        f"{'run':<46}{'sagas/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'floor/s':>8}{'floor p50':>10}{'x floor':>8}",
    ]
    for name, row in throughput.items():
        if "engine_floor" not in row:
            continue
        ours, base = row["ours"], row["engine_floor"]
        lines.append(
            f"{name:<46}{ours['sagas_per_second']:>8.1f}{ours['p50_ms']:>8.0f}{ours['p99_ms']:>8.0f}"
            f"{base['sagas_per_second']:>8.1f}{base['p50_ms']:>10.0f}{row['ours_to_floor_sagas_per_second']:>8.2f}"
        )
    measured = sorted(int(name.rsplit(" ", 1)[1]) for name in throughput if "COMPLETED, concurrency" in name)
    low, high = measured[0], measured[-1]
    c_low, c_high = (
        throughput[f"purchase COMPLETED, concurrency {c}"]["ours"]["sagas_per_second"] for c in (low, high)
    )
    share = throughput[f"purchase COMPLETED, concurrency {low}"]["ours_to_floor_sagas_per_second"]
    hot = throughput["hot product"]
    lines += [
        f"c{high} / c{low}: {c_high / c_low:.2f} (target c8 / c1 >= {SCALE_TARGET}, "
        f"{_verdict(c_high / c_low >= SCALE_TARGET)}); ours / floor at c{low}: {share:.0%} "
        f"(target >= {FLOOR_SHARE_TARGET:.0%}, {_verdict(share >= FLOOR_SHARE_TARGET)})",
        f"hot product ({hot['racers']} at once, one SKU): {hot['sagas_per_second']:.1f} sagas/s, "
        f"p50 {hot['p50_ms']:.0f} ms, {hot['not_completed']} not completed (target 0) {hot['outcomes']}",
        f"peak RSS: engine {peak['engine']:.0f} MB + workers {peak['workers']:.0f} MB",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(preflight.run("make bench", main))
