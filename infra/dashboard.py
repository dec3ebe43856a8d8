"""The operators' dashboard, defined once and rendered twice: the body of the CloudWatch dashboard in
template.yaml (a `Fn::Sub` string naming this stack's resources as `${LogicalId}`) and a Grafana dashboard
over the CloudWatch data source in infra/dashboards/. `make dashboards` rewrites both; a test fails when
either is stale, so edit the panels here, never the outputs.

Golden signals of the API (API Gateway and its function), the state machines (AWS/States) and the step
functions (AWS/Lambda), then the saga panels from our own metrics (chalicelib/metric_names.py).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chalicelib import metric_names as names
from chalicelib.contracts import COMPENSATIONS, STEPS_BY_SAGA, state_of_step

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
GRAFANA = ROOT / "infra" / "dashboards" / "saga-orchestrator.json"
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
STATE_MACHINES = {saga_type: f"{saga_type.capitalize()}SagaStateMachine" for saga_type in SAGA_TYPES}
API_FUNCTION = "APIHandler"


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


def _lambda(name: str, stat: str, steps: tuple[str, ...] = STEPS) -> tuple[Metric, ...]:
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


def sections() -> tuple[Section, ...]:
    outcomes = tuple(
        _ours(names.SAGAS_ENDED, "Sum", f"{t} {outcome}", _typed(t, outcome))
        for t in SAGA_TYPES
        for outcome in names.OUTCOMES
    )
    failed = tuple(_ours(names.SAGAS_ENDED, "Sum", f"{t} FAILED", _typed(t, "FAILED")) for t in SAGA_TYPES)
    gave_up = _per_step(names.COMPENSATIONS_FAILED, "Sum", COMPENSATION_STEPS)
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
                Panel("Step latency p50", "ms", _per_step(names.STEP_LATENCY, "p50")),
                Panel("Step latency p99", "ms", _per_step(names.STEP_LATENCY, "p99")),
                Panel("Step failures (every failed attempt)", "count", _per_step(names.STEP_FAILURES, "Sum")),
                Panel(
                    "Compensations run",
                    "count",
                    _per_step(names.COMPENSATIONS_RUN, "Sum", COMPENSATION_STEPS),
                    stacked=True,
                ),
            ),
        ),
    )


def _layout(all_sections: tuple[Section, ...]) -> list[tuple[Section | Panel, int, int, int, int]]:
    """(item, x, y, width, height): a full-width header per section, then its panels three to a row."""
    placed: list[tuple[Section | Panel, int, int, int, int]] = []
    y = 0
    for section in all_sections:
        placed.append((section, 0, y, WIDTH * COLUMNS, 1))
        y += 1
        for i, panel in enumerate(section.panels):
            placed.append((panel, (i % COLUMNS) * WIDTH, y + (i // COLUMNS) * HEIGHT, WIDTH, HEIGHT))
        y += -(-len(section.panels) // COLUMNS) * HEIGHT
    return placed


def _cloudwatch_metric(metric: Metric, index: int) -> list[Any]:
    options: dict[str, Any] = {"id": f"m{index}", "stat": metric.stat, "label": metric.label}
    if not metric.visible:
        options["visible"] = False
    return [metric.namespace, metric.name, *(part for pair in metric.dimensions for part in pair), options]


def cloudwatch_body() -> str:
    """The DashboardBody: one widget a line, one metric a line, for a readable template and diff."""
    lines = []
    for item, x, y, width, height in _layout(sections()):
        frame = {"type": "text" if isinstance(item, Section) else "metric", "x": x, "y": y}
        frame |= {"width": width, "height": height}
        if isinstance(item, Section):
            lines.append(json.dumps(frame | {"properties": {"markdown": f"## {item.title}"}}))
            continue
        properties = {
            "title": item.title,
            "view": "timeSeries",
            "stacked": item.stacked,
            "region": "${AWS::Region}",
            "period": PERIOD,
            "yAxis": {"left": {"min": 0, "label": item.unit, "showUnits": False}},
        }
        queries = [json.dumps(_cloudwatch_metric(m, i)) for i, m in enumerate(item.metrics)]
        queries += [
            json.dumps([{"expression": e.expression, "label": e.label, "id": f"e{i}"}])
            for i, e in enumerate(item.expressions)
        ]
        head = json.dumps(frame | {"properties": properties})[:-2]
        lines.append(head + ', "metrics": [\n  ' + ",\n  ".join(queries) + "\n]}}")
    return '{"start": "-PT3H", "periodOverride": "auto", "widgets": [\n' + ",\n".join(lines) + "\n]}\n"


def _grafana_target(metric: Metric, index: int) -> dict[str, Any]:
    return {
        "refId": f"m{index}",
        "id": f"m{index}",
        "datasource": DATASOURCE,
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 0,
        "region": "$region",
        "namespace": metric.namespace,
        "metricName": metric.name,
        "dimensions": dict(metric.dimensions),
        "matchExact": True,
        "statistic": metric.stat,
        "period": "",
        "label": metric.label,
        "hide": not metric.visible,
    }


def _grafana_expression(expression: Expression, index: int) -> dict[str, Any]:
    return {
        "refId": f"e{index}",
        "id": f"e{index}",
        "datasource": DATASOURCE,
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 1,
        "region": "$region",
        "expression": expression.expression,
        "label": expression.label,
        "hide": False,
    }


def _grafana_panel(panel: Panel, grid: dict[str, int], panel_id: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {
            "defaults": {
                "unit": GRAFANA_UNITS[panel.unit],
                "min": 0,
                "custom": {"stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [_grafana_target(m, i) for i, m in enumerate(panel.metrics)]
        + [_grafana_expression(e, i) for i, e in enumerate(panel.expressions)],
    }


def _variable(name: str, label: str, namespace: str, metric: str, key: str, regex: str) -> dict[str, Any]:
    """A variable holding one resource of the stack, found among the metric's dimension values."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {
            "refId": name,
            "queryType": "dimensionValues",
            "region": "$region",
            "namespace": namespace,
            "metricName": metric,
            "dimensionKey": key,
            "dimensionFilters": {},
        },
        "regex": regex,
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def grafana_variables() -> list[dict[str, Any]]:
    # CloudFormation names a function it names for us `<stack>-<LogicalId>-<suffix>` and a state machine
    # `<LogicalId>-<suffix>`: the stack variable picks this stack's functions.
    stack = f"${STACK_VARIABLE}"
    functions = [*(step_function(s) for s in STEPS), API_FUNCTION]
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "cloudwatch", "hide": 0},
        {
            "name": "region",
            "label": "Region",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"refId": "region", "queryType": "regions"},
            "current": {"text": "default", "value": "default"},
            "refresh": 1,
            "hide": 0,
        },
        {
            "name": STACK_VARIABLE,
            "label": "CloudFormation stack",
            "type": "textbox",
            "query": STACK_DEFAULT,
            "current": {"text": STACK_DEFAULT, "value": STACK_DEFAULT},
            "hide": 0,
        },
        *(_variable(f, f, "AWS/Lambda", "Invocations", "FunctionName", f"/^{stack}-{f}-/") for f in functions),
        *(
            _variable(m, m, "AWS/States", "ExecutionsStarted", "StateMachineArn", f"/:stateMachine:{m}-/")
            for m in STATE_MACHINES.values()
        ),
    ]


def grafana_dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    for panel_id, (item, x, y, width, height) in enumerate(_layout(sections()), start=1):
        grid = {"x": x, "y": y, "w": width, "h": height}
        if isinstance(item, Section):
            panels.append({"id": panel_id, "type": "row", "title": item.title, "gridPos": grid, "collapsed": False})
        else:
            panels.append(_grafana_panel(item, grid, panel_id))
    return {
        "title": "Saga orchestrator",
        "uid": "saga-orchestrator",
        "description": "Generated by `make dashboards` (infra/dashboard.py), the twin of the stack's CloudWatch one.",
        "tags": ["saga-orchestrator", "aws", "cloudwatch"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-3h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": grafana_variables()},
        "panels": panels,
    }


def grafana_json() -> str:
    return json.dumps(grafana_dashboard(), indent=2) + "\n"


BODY_LINE = re.compile(r"^(?P<indent> *)DashboardBody: !Sub \|\n", re.MULTILINE)


def with_body(template: str, body: str) -> str:
    """template.yaml's text with the dashboard's block scalar (`DashboardBody: !Sub |`) replaced by `body`."""
    found = BODY_LINE.search(template)
    if found is None:
        raise ValueError("template.yaml has no `DashboardBody: !Sub |` line to fill")
    indent = " " * (len(found["indent"]) + 2)
    end = found.end()
    lines = template[end:].splitlines(keepends=True)
    kept = 0
    while kept < len(lines) and (lines[kept].startswith(indent) or not lines[kept].strip()):
        kept += 1
    while kept and not lines[kept - 1].strip():
        kept -= 1
    block = "".join(indent + line + "\n" for line in body.splitlines())
    return template[:end] + block + "".join(lines[kept:])


def main() -> int:
    TEMPLATE.write_text(with_body(TEMPLATE.read_text(), cloudwatch_body()))
    GRAFANA.parent.mkdir(exist_ok=True)
    GRAFANA.write_text(grafana_json())
    print(f"wrote the DashboardBody of {TEMPLATE.relative_to(ROOT)} and {GRAFANA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
