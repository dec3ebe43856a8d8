"""`make bench` runs end to end at a tiny size on each database and writes every figure the issue asks for (no
timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env

ROOT = Path(__file__).resolve().parents[2]
TINY = ("--calls", "3", "--cold-repeats", "1", "--sagas", "2", "--cost-count", "1", "--concurrencies", "1,2")
TINY += ("--hot-racers", "2", "--listing-rows", "1000", "--listing-repeats", "2")
STEPS = {
    "reserve_stock",
    "process_payment",
    "confirm_sale",
    "refund_payment",
    "release_stock",
    "validate_return",
    "issue_refund",
    "update_stock",
    "cancel_refund",
}


BACKENDS = {"embedded": "embedded SQLite", "postgres": "PostgreSQL", "mysql": "MySQL"}


@pytest.mark.parametrize("store", BACKENDS)
def test_bench_writes_every_figure(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if store == "embedded":
        provider = f"sqlite:///{tmp_path / 'provider.db'}"
        env = child_env(f"sqlite:///{tmp_path / 'bench.db'}", PROVIDER_DATABASE_URL=provider)
    else:
        env = child_env(request.getfixturevalue(f"{store}_url"), request.getfixturevalue("real_redis_url"))
    results_file = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--results", str(results_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(results_file.read_text())

    assert set(results["runs"]) == {"step_overhead", "cold_start", "lambda_runtime", "throughput", "cost", "listing"}
    assert all(run["backend"].startswith(BACKENDS[store]) for run in results["runs"].values())
    assert all(
        run["command"] == f'make bench BENCH_ARGS="{" ".join(TINY)} --results {results_file}"'
        for run in results["runs"].values()
    )
    assert set(results["step_overhead"]) == STEPS
    for row in results["step_overhead"].values():
        assert row["handler"]["n"] == row["floor"]["n"] == 3
        assert row["ratio_p50"] == row["handler"]["p50_ms"] / row["floor"]["p50_ms"]
    assert set(results["cold_start"]["steps"]) == STEPS
    assert results["cold_start"]["eager_reference_ms"] > 0 and results["cold_start"]["top_imports"]
    for row in results["cold_start"]["steps"].values():
        # One run each: the paired ratio is the ratio of the medians.
        assert row["ratio_to_import_floor"] == pytest.approx(row["ms"] / row["import_floor_ms"])
        snapstart = row["snapstart"]
        assert snapstart["full_cold_path_ms"] == row["ms"]
        assert snapstart["ratio_to_full_cold_path"] == pytest.approx(
            snapstart["restored_first_invocation_ms"] / row["ms"]
        )
    assert "boto3" not in results["cold_start"]["beyond_import_floor"]["packages"]
    assert all(ms > 0 for ms in results["cold_start"]["options_ms"].values())
    assert {name.split(",")[0] for name in results["throughput"]} >= {"purchase COMPLETED"}
    assert {row["path"] for row in results["transitions_and_cost"]} >= {"purchase COMPLETED", "return COMPLETED"}
    assert results["peak_rss_mb"]["engine"] > 0 and results["peak_rss_mb"]["workers"] > 0
    runtime = results["lambda_runtime"]
    assert runtime["warm_invocation"]["worker"]["n"] == runtime["warm_invocation"]["in_process"]["n"] == 6
    assert set(runtime["first_invocation"]) == STEPS - {"refund_payment", "release_stock", "cancel_refund"}
    assert all(row["cold_start"] and row["init_ms"] > 0 for row in runtime["first_invocation"].values())
    concurrencies = {name.rsplit(" ", 1)[1] for name in results["throughput"] if "COMPLETED, concurrency" in name}
    assert concurrencies == {"1", "2"}
    assert results["throughput"]["hot product"]["n"] == 2
    assert done.stdout.strip().splitlines()[-1].startswith("written to")


def test_the_listing_part_loads_the_sagas_and_times_and_explains_each_case(
    postgres_url: str, real_redis_url: str, tmp_path: Path
) -> None:
    results_file = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--only", "listing", "--listing-rows", "1000", "--listing-repeats", "3"]
    done = subprocess.run(
        [*command, "--results", str(results_file)],
        cwd=ROOT,
        env=child_env(postgres_url, real_redis_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    listing = json.loads(results_file.read_text())["listing"]

    assert (listing["rows"], listing["repeats"], listing["page"]) == (1000, 3, 20)
    assert set(listing["engines"]) == {"PostgreSQL", "MySQL"}
    # Of 1,000 sagas: n % 1000 in 990..994 are FAILED (refund_payment), a fifth are returns.
    expected_found = {"no filter": 20, "status=FAILED": 5, "step=refund_payment": 5, "type=return": 20}
    for engine in listing["engines"].values():
        assert engine["load_seconds"] > 0 and engine["server"]
        cases = engine["cases"]
        assert len(cases) == 13
        assert {case: cases[case]["found"] for case in expected_found} == expected_found
        assert all(row["n"] == 3 and row["p99_ms"] >= row["p50_ms"] > 0 and row["plan"] for row in cases.values())
        assert {scope: row["n"] for scope, row in engine["stats"].items()} == {"every saga": 5, "since halfway": 5}
    assert "Saga search at 1,000 sagas" in done.stdout
