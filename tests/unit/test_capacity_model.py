"""docs/capacity.md's model on synthetic results: the limit reached first at each rate is the one whose demand
reaches it at the lowest rate, the database rows wait for the capacity part, and the cost per month is
`make cost`'s price per saga."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import aws_quotas, capacity_model, capacity_report
from infra.reports import cost

PURCHASE = cost.PathCost("purchase COMPLETED", transitions=4, invocations=3, task_ms=100.0, execution_ms=450.0)
RETURN = cost.PathCost("return COMPLETED", transitions=4, invocations=3, task_ms=90.0, execution_ms=400.0)
OPEN_STACK = {"ApiThrottleRate": 1e9, "PaymentConcurrency": 1e9}
"""The template's own limits out of the way, so that the published quotas decide."""


def synthetic(spread: float | None = 100.0, hot: float = 10.0, one_row: float = 4.0) -> dict[str, Any]:
    """Results as `make bench` writes them; `spread`/`hot` sagas/s on a 2-core machine (None: no capacity part)."""
    saga = {
        "db_transactions": 8.0,
        "db_active_ms": 20.0,
        "redis_commands": 26.0,
        "redis_commands_by_name": {"set": 10.0, "get": 4.0, "watch": 4.0, "multi": 4.0, "exec": 4.0},
        "redis_server_ms": 0.1,
        "provider_calls": 1.0,
    }
    results: dict[str, Any] = {
        "transitions_and_cost": [cost.as_dict(PURCHASE), cost.as_dict(RETURN)],
        "footprint": {"sagas_per_path": 5, "purchase COMPLETED": saga, "return COMPLETED": saga},
        "step_overhead": {"process_payment": {"handler": {"p50_ms": 20.0, "p99_ms": 40.0, "n": 10}}},
        "runs": {},
    }
    for part in ("footprint", "cost", "step_overhead", "capacity"):
        results["runs"][part] = {
            "measured_at": "2026-12-06T12:00+00:00",
            "command": "make bench",
            "backend": "PostgreSQL",
            "machine": "x86_64, 2 cores",
            "arguments": {},
            "load_average": [1.0, 1.0],
        }
    if spread is not None:
        steps = {"reserve_stock": {"p50_ms": 5.0, "p99_ms": 9.0}}

        def run(scale: float) -> dict[str, Any]:
            return {
                shape: {"sagas_per_second": rate * scale, "steps": steps}
                for shape, rate in (("spread", spread), ("hot", hot), ("hot_one_row", one_row))
            }

        workers = {"1": run(0.5), "4": run(1.0), "16": run(0.9), "64": run(0.7)}
        results["capacity"] = {
            "db": {"postgres": {"workers": workers, "hot_over_spread": hot / spread}},
            "machine": {"cores": 2},
        }
    return results


def first_reached(results: dict[str, Any], stack: dict[str, float] = OPEN_STACK) -> dict[int, list[str]]:
    return {row.rate: [r.name for r in row.new] for row in capacity_model.rate_rows(results, stack)}


def test_each_rate_names_the_limits_its_demand_reaches_lowest_ceiling_first() -> None:
    # 50 sagas/s per core over many SKUs: 64 vCPUs carry 3,200; 5 per core on one SKU: 320.
    # Stripe: 100 calls/s at one call a saga; StartExecution 300; transitions 1,500 / 4 = 375;
    # Lambda 1,000 / (3 x 0.1 s) = 3,333; API Gateway's account 10,000.
    reached = first_reached(synthetic())

    assert reached[10] == []
    assert reached[100] == ["Stripe live-mode writes"]
    assert reached[1_000] == [
        "Step Functions Standard StartExecution",
        "database cores, a flash sale on one SKU",
        "Step Functions Standard state transitions",
    ]
    assert reached[10_000] == [
        "database cores, sagas over many SKUs",
        "Lambda concurrent executions",
        "API Gateway account throttle",
    ]


def test_a_flash_sale_breaks_first_when_one_sku_carries_the_least() -> None:
    # 2 sagas/s on one SKU over 2 cores: one core per saga/s, so 64 vCPUs carry 64, before Stripe's 100.
    reached = first_reached(synthetic(hot=2.0))

    assert reached[100] == ["database cores, a flash sale on one SKU", "Stripe live-mode writes"]


def test_the_templates_defaults_are_reached_before_any_quota() -> None:
    reached = first_reached(synthetic(), capacity_model.stack_defaults())

    # ApiThrottleRate 100 at one request a saga, PaymentConcurrency 10 at 0.02 s a payment: 500 sagas/s.
    assert reached[100] == ["API stage throttle (ApiThrottleRate)", "Stripe live-mode writes"]
    assert "process_payment reserved concurrency (PaymentConcurrency)" in reached[1_000]


def test_the_database_tier_is_taken_at_its_best_worker_count_per_core() -> None:
    tier = capacity_model.database_tier(synthetic(spread=100.0, hot=10.0, one_row=4.0))

    assert tier == capacity_model.DatabaseTier(
        spread_per_core=50.0, hot_per_core=5.0, one_row_sagas_per_second=4.0, cores=2
    )


def test_without_the_capacity_part_the_database_rows_say_they_are_not_measured(tmp_path: Path) -> None:
    results = synthetic(spread=None)
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(results))

    reached = first_reached(results)

    assert capacity_model.database_tier(results) is None
    assert not any("database cores" in name for names in reached.values() for name in names)
    for page in (capacity_report.rates(path), capacity_report.ceilings(path), capacity_report.database_tier(path)):
        assert capacity_model.NOT_MEASURED in page
    assert capacity_model.NOT_MEASURED not in capacity_report.rates(_written(tmp_path, synthetic()))


def test_the_cost_per_month_is_make_costs_price_of_a_completed_purchase() -> None:
    rows = capacity_model.rate_rows(synthetic(), OPEN_STACK)

    for row in rows:
        sagas = row.rate * 30 * 24 * 3600
        assert row.standard_per_month == pytest.approx(sagas * PURCHASE.per_thousand(express=False) / 1000)
        assert row.express_per_month == pytest.approx(sagas * PURCHASE.per_thousand(express=True) / 1000)


def test_lambdas_ramp_is_the_concurrency_one_function_needs_over_its_scaling_rate() -> None:
    rows = {row.rate: row for row in capacity_model.rate_rows(synthetic(), OPEN_STACK)}

    # 10,000 sagas/s x 0.1 s per invocation = 1,000 environments of one function, at 100 new ones a second.
    assert rows[10_000].cold_ramp_seconds == pytest.approx(10.0)


def test_every_quota_names_the_page_that_states_it() -> None:
    assert all(quota.source.startswith("https://") for quota in aws_quotas.QUOTAS)
    rendered = capacity_report.quotas()
    assert all(f"]({quota.source})" in rendered for quota in aws_quotas.QUOTAS)


def _written(directory: Path, results: dict[str, Any]) -> Path:
    path = directory / "with-capacity.json"
    path.write_text(json.dumps(results))
    return path


def test_the_database_tier_table_has_a_row_per_engine_measured(tmp_path: Path) -> None:
    results = synthetic()
    results["capacity"]["db"]["mysql"] = {"workers": results["capacity"]["db"]["postgres"]["workers"]}

    page = capacity_report.database_tier(_written(tmp_path, results))

    assert "| postgres | 50.0 | 5.0 | 4.0 | 0.10 |" in page
    assert "| mysql | 50.0 | 5.0 | 4.0 | - |" in page
