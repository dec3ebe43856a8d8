"""docs/capacity.md's model: what a completed purchase asks of each service (measured: `make bench`'s footprint,
cost, step overhead and capacity parts), multiplied by a rate of sagas per second and held against each service's
limit (bench/aws_quotas.py, template.yaml's defaults). A resource saturates at the rate where its demand reaches
its limit; the lowest such rate is what breaks first. The cost per month is `make cost`'s price per saga
(infra/reports/cost.py) times the sagas of a month.

Linear in the rate: every saga costs the same whatever the rate. That holds for the per-saga counts (transitions,
calls, commands, transactions); for the database, it assumes the throughput measured per core here scales with the
cores of a bigger instance, which one 2-core machine cannot show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import aws_quotas
from bench.aws_quotas import Quota
from infra.engine.local_engine import load_template

RATES = (10, 100, 1_000, 10_000)
SECONDS_PER_MONTH = 30 * 24 * 3600
PATH = "purchase COMPLETED"
API_REQUESTS_PER_SAGA = 1
"""The POST that starts a saga, as `make cost` prices it; a client polling GET /sagas/{id} adds one per poll."""
DATABASE_ENGINE = "postgres"
TEMPLATE = "template.yaml"
NOT_MEASURED = "not yet measured: run make bench BENCH_ARGS=--only capacity"


@dataclass(frozen=True)
class SagaCosts:
    """What one completed purchase asks of each service, as measured."""

    transitions: float
    invocations: float
    task_ms: float
    """Per invocation, from the execution histories: an upper bound of the billed duration."""
    payment_ms: float
    """process_payment's warm p50 through its handler, against the local provider."""
    db_transactions: float
    db_active_ms: float
    redis_commands: float
    provider_calls: float
    standard_per_saga: float
    express_per_saga: float

    @property
    def lambda_seconds(self) -> float:
        return self.invocations * self.task_ms / 1000


@dataclass(frozen=True)
class DatabaseTier:
    """The purchase steps' transactions from concurrent workers (`--only capacity`), per core of the machine."""

    spread_per_core: float
    hot_per_core: float
    one_row_sagas_per_second: float | None
    cores: int


@dataclass(frozen=True)
class Resource:
    name: str
    per_saga: float | None
    """Demand for each saga per second (None: not measured yet)."""
    limit: float
    unit: str
    knob: str
    source: str

    def demand(self, rate: float) -> float | None:
        return None if self.per_saga is None else rate * self.per_saga

    @property
    def ceiling(self) -> float | None:
        """The sagas per second at which the demand reaches the limit."""
        if self.per_saga is None:
            return None
        return float("inf") if self.per_saga == 0 else self.limit / self.per_saga


@dataclass(frozen=True)
class RateRow:
    rate: int
    saturated: list[Resource]
    """The resources whose demand reaches their limit at this rate, lowest ceiling first."""
    new: list[Resource]
    """Those of `saturated` that the previous rate left within their limit: what breaks first on the way here,
    once the knobs of the lower rates are turned."""
    closest: Resource
    standard_per_month: float
    express_per_month: float
    cold_ramp_seconds: float
    """How long Lambda takes to scale one function from nothing to this rate's concurrency."""


def saga_costs(results: dict[str, Any]) -> SagaCosts:
    path = next(row for row in results["transitions_and_cost"] if row["path"] == PATH)
    footprint = results["footprint"][PATH]
    return SagaCosts(
        transitions=path["transitions"],
        invocations=path["invocations"],
        task_ms=path["task_ms"],
        payment_ms=results["step_overhead"]["process_payment"]["handler"]["p50_ms"],
        db_transactions=footprint["db_transactions"],
        db_active_ms=footprint["db_active_ms"],
        redis_commands=footprint["redis_commands"],
        provider_calls=footprint["provider_calls"],
        standard_per_saga=path["standard_per_1000"] / 1000,
        express_per_saga=path["express_per_1000"] / 1000,
    )


def database_tier(results: dict[str, Any], engine: str = DATABASE_ENGINE) -> DatabaseTier | None:
    """The best throughput over the worker counts, per core; None before `--only capacity` ran on `engine`."""
    capacity = results.get("capacity", {})
    runs = capacity.get("db", {}).get(engine, {}).get("workers")
    if not runs:
        return None
    cores = int(capacity["machine"]["cores"])

    def best(shape: str) -> float:
        return max(float(run[shape]["sagas_per_second"]) for run in runs.values())

    one_row = best("hot_one_row") if all("hot_one_row" in run for run in runs.values()) else None
    return DatabaseTier(best("spread") / cores, best("hot") / cores, one_row, cores)


def stack_defaults(template: dict[str, Any] | None = None) -> dict[str, float]:
    """The template's own limits, as deployed with their defaults."""
    parameters = (template or load_template())["Parameters"]
    return {name: float(parameters[name]["Default"]) for name in ("ApiThrottleRate", "PaymentConcurrency")}


def resources(costs: SagaCosts, tier: DatabaseTier | None, stack: dict[str, float]) -> list[Resource]:
    """Every resource a saga uses, with its demand per saga per second and its limit."""

    def quota(q: Quota, per_saga: float | None, knob: str) -> Resource:
        return Resource(q.name, per_saga, q.value, q.unit, knob, q.source)

    spread = None if tier is None else 1 / tier.spread_per_core
    hot = None if tier is None else 1 / tier.hot_per_core
    cores = aws_quotas.LARGEST_DB_INSTANCE_VCPUS
    return [
        Resource(
            "API stage throttle (ApiThrottleRate)",
            API_REQUESTS_PER_SAGA,
            stack["ApiThrottleRate"],
            "requests/s",
            "raise the ApiThrottleRate and ApiThrottleBurst parameters",
            TEMPLATE,
        ),
        quota(aws_quotas.API_GATEWAY_ACCOUNT, API_REQUESTS_PER_SAGA, "quota increase"),
        quota(
            aws_quotas.STRIPE_LIVE_WRITES,
            costs.provider_calls,
            "a higher limit from Stripe (ask 6 weeks ahead); PaymentConcurrency holds the steps under it meanwhile",
        ),
        Resource(
            "process_payment reserved concurrency (PaymentConcurrency)",
            costs.payment_ms / 1000,
            stack["PaymentConcurrency"],
            "executions at once",
            "raise PaymentConcurrency, within the provider's rate limit",
            TEMPLATE,
        ),
        quota(
            aws_quotas.STANDARD_START_EXECUTION,
            1,
            "quota increase; or Express (6,000/s) for sagas whose worst case fits in 5 minutes",
        ),
        quota(
            aws_quotas.STANDARD_STATE_TRANSITIONS,
            costs.transitions,
            "quota increase; or Express, whose transitions are not throttled",
        ),
        quota(aws_quotas.LAMBDA_CONCURRENCY, costs.lambda_seconds, "quota increase (tens of thousands)"),
        Resource(
            "database cores, sagas over many SKUs",
            spread,
            cores.value,
            cores.unit,
            "a bigger instance; past the largest, split the rows between databases by SKU",
            cores.source,
        ),
        Resource(
            "database cores, a flash sale on one SKU",
            hot,
            cores.value,
            cores.unit,
            "a bigger instance; past the largest, split the SKU's stock between databases",
            cores.source,
        ),
        quota(
            aws_quotas.RDS_PROXY_POOL,
            costs.db_active_ms / 1000,
            "a bigger instance (max_connections follows its memory), or MaxConnectionsPercent",
        ),
        quota(aws_quotas.ELASTICACHE_NODE, costs.redis_commands, "a bigger node, or cluster mode's shards"),
    ]


def rate_rows(results: dict[str, Any], stack: dict[str, float] | None = None) -> list[RateRow]:
    """At each rate of RATES: what saturates (lowest ceiling first), the closest to its limit, the cost per month."""
    costs = saga_costs(results)
    every = resources(costs, database_tier(results), stack or stack_defaults())
    ceilings = [(resource, resource.ceiling) for resource in every]
    measured = [(resource, ceiling) for resource, ceiling in ceilings if ceiling is not None]
    rows: list[RateRow] = []
    for rate in RATES:
        saturated = [resource for resource, ceiling in sorted(measured, key=lambda pair: pair[1]) if rate >= ceiling]
        before = set(rows[-1].saturated) if rows else set()
        rows.append(
            RateRow(
                rate,
                saturated,
                [resource for resource in saturated if resource not in before],
                max(measured, key=lambda pair: rate / pair[1])[0],
                rate * SECONDS_PER_MONTH * costs.standard_per_saga,
                rate * SECONDS_PER_MONTH * costs.express_per_saga,
                rate * costs.task_ms / 1000 / aws_quotas.LAMBDA_SCALING_RATE.value,
            )
        )
    return rows
