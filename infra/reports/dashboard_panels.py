"""The operators' dashboard panels, defined once: golden signals of the API (API Gateway and its function), the
state machines (AWS/States) and the step functions (AWS/Lambda), then the saga panels from our own metrics
(chalicelib/observability/metric_names.py), the reconciler's among them. infra/reports/dashboard.py renders them for
CloudWatch and Grafana.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chalicelib.domain.contracts import COMPENSATIONS, STEPS_BY_SAGA, state_of_step
from chalicelib.observability import metric_names as names

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
GRAFANA = ROOT / "infra" / "reports" / "dashboards" / "saga-orchestrator.json"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"

Unit = Literal["count", "ms", "percent"]
GRAFANA_UNITS: dict[Unit, str] = {"count": "short", "ms": "ms", "percent": "percent"}
WIDTH, HEIGHT, COLUMNS = 8, 6, 3
PERIOD = 60
STACK_VARIABLE = "stack"
STACK_DEFAULT = "saga-orchestrator"
DATASOURCE = {"type": "cloudwatch", "uid": "${datasource}"}


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    label: str
    visible: bool = True


@dataclass(frozen=True)
class Expression:
    expression: str
    """Metric math over the panel's metrics, named m0, m1, ... in their order."""
    label: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: Unit
    metrics: tuple[Metric, ...]
    expressions: tuple[Expression, ...] = ()
    stacked: bool = False


@dataclass(frozen=True)
class Section:
    title: str
    panels: tuple[Panel, ...]


def ref(logical_id: str) -> str:
    """A resource of the stack: `Fn::Sub` resolves it in CloudFormation, a variable of that name in Grafana."""
    return "${" + logical_id + "}"


STEPS = tuple(step for steps in STEPS_BY_SAGA.values() for step in steps)
SAGA_TYPES = tuple(STEPS_BY_SAGA)
COMPENSATION_STEPS = tuple(step for step in STEPS if step in COMPENSATIONS)
TASK_FUNCTIONS = (*STEPS, "compensation_failed")
"""Every function a state machine invokes: the steps, and the task that records a saga FAILED."""
STATE_MACHINES = {saga_type: f"{saga_type.capitalize()}SagaStateMachine" for saga_type in SAGA_TYPES}
API_FUNCTION = "APIHandler"
RECONCILER_FUNCTION = "ReconcilerFunction"


def step_function(step: str) -> str:
    """The logical id of a step's Lambda function in template.yaml (reserve_stock -> ReserveStockFunction)."""
    return f"{state_of_step(step)}Function"


def api_name_and_stage() -> tuple[str, str]:
    """API Gateway names its REST API after the OpenAPI title chalice writes, the app name; the stage is
    chalice's `api_gateway_stage`. API Gateway metrics are dimensioned by these names, not by ids."""
    config = json.loads(CHALICE_CONFIG.read_text())
    return config["app_name"], config["stages"]["dev"]["api_gateway_stage"]


def _ours(name: str, stat: str, label: str, dimensions: dict[str, str], visible: bool = True) -> Metric:
    """A metric of our namespace, with the `service` dimension every one of them carries."""
    service = (names.SERVICE_DIMENSION, names.SERVICE)
    return Metric(names.NAMESPACE, name, (service, *dimensions.items()), stat, label, visible)


def _typed(saga_type: str, outcome: str | None = None) -> dict[str, str]:
    dimensions = {names.SAGA_TYPE_DIMENSION: saga_type}
    return dimensions | ({names.OUTCOME_DIMENSION: outcome} if outcome else {})


def _per_step(name: str, stat: str, steps: tuple[str, ...] = STEPS) -> tuple[Metric, ...]:
    return tuple(_ours(name, stat, step, {names.STEP_DIMENSION: step}) for step in steps)


def _lambda(name: str, stat: str, steps: tuple[str, ...] = TASK_FUNCTIONS) -> tuple[Metric, ...]:
    return tuple(Metric("AWS/Lambda", name, (("FunctionName", ref(step_function(s))),), stat, s) for s in steps)


def _states(name: str, stat: str, label: str = "") -> tuple[Metric, ...]:
    return tuple(
        Metric("AWS/States", name, (("StateMachineArn", ref(machine)),), stat, " ".join(filter(None, (t, label))))
        for t, machine in STATE_MACHINES.items()
    )


def _api(name: str, stat: str, label: str) -> Metric:
    api, stage = api_name_and_stage()
    return Metric("AWS/ApiGateway", name, (("ApiName", api), ("Stage", stage)), stat, label)


def _api_function(name: str, stat: str, label: str) -> Metric:
    return Metric("AWS/Lambda", name, (("FunctionName", ref(API_FUNCTION)),), stat, label)


def _compensation_rate() -> Panel:
    started = tuple(_ours(names.SAGAS_STARTED, "Sum", f"{t} started", _typed(t), visible=False) for t in SAGA_TYPES)
    compensated = tuple(
        _ours(names.SAGAS_ENDED, "Sum", f"{t} compensated", _typed(t, "COMPENSATED"), visible=False) for t in SAGA_TYPES
    )
    count = len(SAGA_TYPES)
    per_type = tuple(
        Expression(f"100 * FILL(m{count + i}, 0) / m{i}", f"{t} compensated %") for i, t in enumerate(SAGA_TYPES)
    )
    all_started = " + ".join(f"FILL(m{i}, 0)" for i in range(count))
    all_compensated = " + ".join(f"FILL(m{count + i}, 0)" for i in range(count))
    total = Expression(f"100 * ({all_compensated}) / ({all_started})", "all sagas compensated %")
    return Panel("Compensation rate (% of sagas started)", "percent", started + compensated, (*per_type, total))


def search(name: str, stat: str) -> str:
    """A SEARCH over every value of a metric's dimensions (the catalogue's exact set), one line per combination:
    for a dimension whose values come and go, like `Definition` with each deploy."""
    _, dimensions = names.METRICS[name]
    schema = ",".join((names.NAMESPACE, *sorted(dimensions)))
    return f"SEARCH('{{{schema}}} MetricName=\"{name}\"', '{stat}', {PERIOD})"


def sections() -> tuple[Section, ...]:
    outcomes = tuple(
        _ours(names.SAGAS_ENDED, "Sum", f"{t} {outcome}", _typed(t, outcome))
        for t in SAGA_TYPES
        for outcome in names.OUTCOMES
    )
    failed = tuple(_ours(names.SAGAS_ENDED, "Sum", f"{t} FAILED", _typed(t, "FAILED")) for t in SAGA_TYPES)
    gave_up = _per_step(names.COMPENSATIONS_FAILED, "Sum", COMPENSATION_STEPS)
    throttled_out = tuple(
        _ours(names.THROTTLE_RETRIES_EXHAUSTED, "Sum", step, {**_typed(t), names.STEP_DIMENSION: step})
        for t, steps in STEPS_BY_SAGA.items()
        for step in steps
        if step not in COMPENSATIONS
    )
    return (
        Section(
            "API: API Gateway and the API function",
            (
                Panel("API requests", "count", (_api("Count", "Sum", "requests"),)),
                Panel("API errors", "count", (_api("4XXError", "Sum", "4xx"), _api("5XXError", "Sum", "5xx"))),
                Panel(
                    "API latency",
                    "ms",
                    (
                        _api("Latency", "p50", "p50"),
                        _api("Latency", "p99", "p99"),
                        _api("IntegrationLatency", "p99", "integration p99"),
                    ),
                ),
                Panel(
                    "API saturation and throttles",
                    "count",
                    (
                        _api_function("ConcurrentExecutions", "Maximum", "concurrent executions"),
                        _api_function("Throttles", "Sum", "throttles"),
                        _api_function("Errors", "Sum", "function errors"),
                    ),
                ),
            ),
        ),
        Section(
            "State machines",
            (
                Panel("Executions started", "count", _states("ExecutionsStarted", "Sum")),
                Panel(
                    "Executions failed, timed out, aborted",
                    "count",
                    _states("ExecutionsFailed", "Sum", "failed")
                    + _states("ExecutionsTimedOut", "Sum", "timed out")
                    + _states("ExecutionsAborted", "Sum", "aborted"),
                ),
                Panel(
                    "Execution time",
                    "ms",
                    _states("ExecutionTime", "p50", "p50") + _states("ExecutionTime", "p99", "p99"),
                ),
                Panel("Executions throttled", "count", _states("ExecutionThrottled", "Sum")),
            ),
        ),
        Section(
            "Step functions (Lambda)",
            (
                Panel("Step invocations", "count", _lambda("Invocations", "Sum"), stacked=True),
                Panel("Step errors", "count", _lambda("Errors", "Sum")),
                Panel("Step duration p99", "ms", _lambda("Duration", "p99")),
                Panel("Step concurrent executions", "count", _lambda("ConcurrentExecutions", "Maximum")),
                Panel("Step throttles", "count", _lambda("Throttles", "Sum")),
            ),
        ),
        Section(
            "Sagas",
            (
                Panel(
                    "Sagas started",
                    "count",
                    tuple(_ours(names.SAGAS_STARTED, "Sum", t, _typed(t)) for t in SAGA_TYPES),
                    stacked=True,
                ),
                Panel("Saga outcomes", "count", outcomes, stacked=True),
                _compensation_rate(),
                Panel("FAILED sagas and the compensations that gave up", "count", failed + gave_up),
                Panel("Sagas compensated because a step was throttled out (the last resort)", "count", throttled_out),
                Panel(
                    "Definition faults per definition deployed (the canary's rollback alarm)",
                    "count",
                    (),
                    (Expression(search(names.DEFINITION_FAULTS, "Sum"), "faults"),),
                ),
                Panel("Step latency p50", "ms", _per_step(names.STEP_LATENCY, "p50")),
                Panel("Step latency p99", "ms", _per_step(names.STEP_LATENCY, "p99")),
                Panel("Step failures (every failed attempt)", "count", _per_step(names.STEP_FAILURES, "Sum")),
                Panel(
                    "Compensations run",
                    "count",
                    _per_step(names.COMPENSATIONS_RUN, "Sum", COMPENSATION_STEPS),
                    stacked=True,
                ),
                Panel(
                    "Reconciler: stuck sagas found and resumed",
                    "count",
                    (
                        _ours(names.STUCK_SAGAS_FOUND, "Sum", "found stuck", {}),
                        _ours(names.STUCK_SAGAS_RESUMED, "Sum", "resumed", {}),
                        Metric("AWS/Lambda", "Errors", (("FunctionName", ref(RECONCILER_FUNCTION)),), "Sum", "errors"),
                    ),
                ),
                Panel(
                    "Operators: sagas cancelled, resolved and bulk-retried",
                    "count",
                    tuple(
                        _ours(
                            names.OPERATOR_ACTIONS,
                            "Sum",
                            f"{t} {action}",
                            {**_typed(t), names.ACTION_DIMENSION: action},
                        )
                        for t in SAGA_TYPES
                        for action in names.OPERATOR_ACTION_NAMES
                    ),
                    stacked=True,
                ),
            ),
        ),
    )
