"""The operators' dashboard, defined once (infra/reports/dashboard_panels.py) and rendered twice: the body of the
CloudWatch dashboard in template.yaml (a `Fn::Sub` string naming this stack's resources as `${LogicalId}`) and a
Grafana dashboard over the CloudWatch data source in infra/reports/dashboards/. `make dashboards` rewrites both; a test
fails when either is stale, so edit the panels, never the outputs.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from infra.reports.dashboard_panels import (
    API_FUNCTION,
    COLUMNS,
    DATASOURCE,
    GRAFANA,
    GRAFANA_UNITS,
    HEIGHT,
    PERIOD,
    RECONCILER_FUNCTION,
    ROOT,
    STACK_DEFAULT,
    STACK_VARIABLE,
    STATE_MACHINES,
    TASK_FUNCTIONS,
    TEMPLATE,
    WIDTH,
    Expression,
    Metric,
    Panel,
    Section,
    sections,
    step_function,
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
    functions = [*(step_function(s) for s in TASK_FUNCTIONS), API_FUNCTION, RECONCILER_FUNCTION]
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
        "description": (
            "Generated by `make dashboards` (infra/reports/dashboard.py), the twin of the stack's CloudWatch one."
        ),
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
