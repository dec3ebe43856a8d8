"""The CloudWatch dashboard of template.yaml and its Grafana twin in infra/reports/dashboards/: valid, alike, and
querying only metrics that exist (ours as observability/metric_names.py lists them, AWS's of our resources)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from chalicelib.domain.contracts import COMPENSATIONS, STEPS_BY_SAGA, state_of_step
from chalicelib.observability import metric_names as names
from infra.engine.local_engine import load_template
from infra.reports import dashboard
from tests.template_refs import function_substitutions, invoked_function

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
GRAFANA_FILE = ROOT / "infra" / "reports" / "dashboards" / "saga-orchestrator.json"

SUBSTITUTION = re.compile(r"\$\{([^}]+)\}")
SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\} MetricName=\"(?P<name>\w+)\"")
REGION = "<region>"
GRAFANA_OWN_VARIABLES = {"datasource", "region", "stack"}
STEPS = {step for steps in STEPS_BY_SAGA.values() for step in steps}
ALLOWED_VALUES = {
    names.SERVICE_DIMENSION: {names.SERVICE},
    names.SAGA_TYPE_DIMENSION: set(STEPS_BY_SAGA),
    names.OUTCOME_DIMENSION: set(names.OUTCOMES),
    names.STEP_DIMENSION: STEPS,
    names.ACTION_DIMENSION: set(names.OPERATOR_ACTION_NAMES),
}


@dataclass(frozen=True)
class Query:
    """One metric a panel asks for, as both dashboards can say it: resources as `<LogicalId>`."""

    id: str
    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    stat: str
    shown: bool


@dataclass
class Panel:
    title: str
    queries: list[Query]
    expressions: dict[str, str]


def _placeholder(name: str) -> str:
    return REGION if name in ("AWS::Region", "region") else f"<{name}>"


def template_body_source(template: dict[str, Any] = TEMPLATE) -> str:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    assert set(body) == {"Fn::Sub"} and isinstance(body["Fn::Sub"], str), "DashboardBody must be a Fn::Sub string"
    return str(body["Fn::Sub"])


def cloudwatch_panels(source: str) -> list[Panel]:
    body = json.loads(SUBSTITUTION.sub(lambda m: _placeholder(m[1]), source))
    panels = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        assert properties["region"] == REGION, properties["title"]
        queries, expressions = [], {}
        for entry in properties["metrics"]:
            *fields, options = entry
            if "expression" in options:
                assert fields == [], properties["title"]
                expressions[options["id"]] = options["expression"]
                continue
            # "." repeats the line above in CloudWatch; we never use it, so every line says all it queries.
            assert "." not in fields and len(fields) % 2 == 0, (properties["title"], entry)
            namespace, name, *pairs = fields
            dimensions = frozenset(zip(pairs[::2], pairs[1::2], strict=True))
            shown = options.get("visible", True)
            queries.append(Query(options["id"], namespace, name, dimensions, options["stat"], shown))
        panels.append(Panel(properties["title"], queries, expressions))
    return panels


def grafana_dashboard() -> dict[str, Any]:
    return dict(json.loads(GRAFANA_FILE.read_text()))


def _grafana_resolve(text: str) -> str:
    resolved = SUBSTITUTION.sub(lambda m: _placeholder(m[1]), text)
    return REGION if resolved == "$region" else resolved


def grafana_panels(board: dict[str, Any]) -> list[Panel]:
    panels = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "cloudwatch", "uid": "${datasource}"}, panel["title"]
        queries, expressions = [], {}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["queryMode"] == "Metrics"
            assert _grafana_resolve(target["region"]) == REGION, panel["title"]
            if target["metricEditorMode"] == 1:
                expressions[target["id"]] = target["expression"]
                continue
            assert target["metricQueryType"] == 0 and target["matchExact"] is True, panel["title"]
            dimensions = frozenset((k, _grafana_resolve(v)) for k, v in target["dimensions"].items())
            queries.append(
                Query(
                    target["id"],
                    target["namespace"],
                    target["metricName"],
                    dimensions,
                    target["statistic"],
                    not target["hide"],
                )
            )
        panels.append(Panel(panel["title"], queries, expressions))
    return panels


def all_queries(panels: list[Panel]) -> Iterator[tuple[str, Query]]:
    for panel in panels:
        for query in panel.queries:
            yield panel.title, query


def searched(panels: list[Panel]) -> Iterator[tuple[str, str, str, set[str]]]:
    """(panel title, namespace, metric, dimension names) of every SEARCH a panel's metric math runs."""
    for panel in panels:
        for expression in panel.expressions.values():
            for found in SEARCH.finditer(expression):
                namespace, *dimensions = found["schema"].split(",")
                yield panel.title, namespace, found["name"], set(dimensions)


def catalogue_problems(panels: list[Panel]) -> list[str]:
    """What in our namespace is not a metric of the catalogue with exactly its dimensions and allowed values."""
    problems = []
    for title, namespace, name, dimensions in searched(panels):
        if namespace == names.NAMESPACE and set(names.METRICS.get(name, ("", ()))[1]) != dimensions:
            problems.append(f"{title}: SEARCH of {name} by {sorted(dimensions)} is not a catalogued metric")
    for title, query in all_queries(panels):
        if query.namespace != names.NAMESPACE:
            continue
        if query.name not in names.METRICS:
            problems.append(f"{title}: {query.name} is not in chalicelib/observability/metric_names.py")
            continue
        expected = set(names.METRICS[query.name][1])
        given = {key for key, _ in query.dimensions}
        if given != expected:
            problems.append(f"{title}: {query.name} queried with {sorted(given)}, emitted with {sorted(expected)}")
        problems += [
            f"{title}: {query.name} {key}={value} is never emitted"
            for key, value in query.dimensions
            if value not in ALLOWED_VALUES.get(key, set())
        ]
    return problems


CLOUDWATCH = cloudwatch_panels(template_body_source())
GRAFANA = grafana_panels(grafana_dashboard())


@pytest.mark.parametrize("panels", [CLOUDWATCH, GRAFANA], ids=["cloudwatch", "grafana"])
def test_every_metric_of_our_namespace_is_in_the_catalogue_with_exactly_its_dimensions(panels: list[Panel]) -> None:
    ours = {q.name for _, q in all_queries(panels) if q.namespace == names.NAMESPACE}
    ours |= {name for _, namespace, name, _ in searched(panels) if namespace == names.NAMESPACE}
    assert ours == set(names.METRICS), "every metric of the catalogue has a panel"
    assert catalogue_problems(panels) == []


def test_the_catalogue_check_names_a_wrong_dimension_set_and_an_unknown_metric() -> None:
    source = template_body_source()
    broken = source.replace('"SagasStarted", "service", "saga-orchestrator", ', '"SagasStarted", ', 1)
    broken = broken.replace('"StepFailures"', '"StepFailed"', 1)
    assert broken.count("StepFailed") == 1
    problems = catalogue_problems(cloudwatch_panels(broken))
    assert any("SagasStarted queried with ['SagaType'], emitted with ['SagaType', 'service']" in p for p in problems)
    assert any("StepFailed is not in chalicelib/observability/metric_names.py" in p for p in problems)
    narrower = source.replace("{SagaOrchestrator,Definition,SagaType,service}", "{SagaOrchestrator,SagaType,service}")
    problems = catalogue_problems(cloudwatch_panels(narrower))
    assert any("SEARCH of DefinitionFaults by ['SagaType', 'service'] is not" in p for p in problems)


def test_the_catalogue_units_are_powertools_units() -> None:
    units = {unit.value for unit in MetricUnit}
    assert {unit for unit, _ in names.METRICS.values()} <= units
    assert names.METRICS[names.STEP_LATENCY] == (MetricUnit.Milliseconds.value, ("service", "Step"))
    assert names.METRICS[names.SAGAS_ENDED] == (MetricUnit.Count.value, ("service", "SagaType", "Outcome"))


def test_the_template_dashboard_is_json_that_names_only_resources_of_the_template() -> None:
    assert RESOURCES["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
    source = template_body_source()
    referenced = set(SUBSTITUTION.findall(source))
    assert referenced - set(RESOURCES) == {"AWS::Region"}
    assert {"APIHandler", "PurchaseSagaStateMachine", "ReturnSagaStateMachine"} <= referenced
    widgets = json.loads(SUBSTITUTION.sub("x", source))["widgets"]
    assert all(w["x"] + w["width"] <= 24 for w in widgets)
    outputs = TEMPLATE["Outputs"]
    assert outputs["DashboardName"]["Value"] == {"Ref": "Dashboard"}
    assert "${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


def test_the_grafana_dashboard_has_a_cloudwatch_datasource_variable_a_region_and_one_variable_a_resource() -> None:
    board = grafana_dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "cloudwatch"
    assert variables["region"]["query"]["queryType"] == "regions"
    resources = set(variables) - GRAFANA_OWN_VARIABLES
    assert resources <= set(RESOURCES), "a variable per resource, named by its logical id"
    kinds = {
        "AWS::Serverless::Function": ("AWS/Lambda", "FunctionName"),
        "AWS::Serverless::StateMachine": ("AWS/States", "StateMachineArn"),
    }
    for name in resources:
        query = variables[name]["query"]
        assert (query["namespace"], query["dimensionKey"]) == kinds[RESOURCES[name]["Type"]], name
        assert query["queryType"] == "dimensionValues" and query["region"] == "$region"
        assert f"{name}-" in variables[name]["regex"], "the regex picks the resource by its logical id"
    text = GRAFANA_FILE.read_text()
    used = set(SUBSTITUTION.findall(text)) | set(re.findall(r"\$([A-Za-z]\w*)", text))
    assert used <= set(variables), "every variable a query uses is defined"
    assert resources <= used


def test_both_dashboards_have_the_same_panels_querying_the_same_metrics() -> None:
    assert [p.title for p in CLOUDWATCH] == [p.title for p in GRAFANA]
    assert len(CLOUDWATCH) >= 15
    for ours, theirs in zip(CLOUDWATCH, GRAFANA, strict=True):
        assert ours.queries == theirs.queries, ours.title
        assert ours.expressions == theirs.expressions, ours.title
    sections = [
        w["properties"]["markdown"].lstrip("# ")
        for w in json.loads(SUBSTITUTION.sub("x", template_body_source()))["widgets"]
        if w["type"] == "text"
    ]
    assert sections == [p["title"] for p in grafana_dashboard()["panels"] if p["type"] == "row"]


@pytest.mark.parametrize("panels", [CLOUDWATCH, GRAFANA], ids=["cloudwatch", "grafana"])
def test_metric_math_uses_only_hidden_or_shown_metrics_of_its_own_panel(panels: list[Panel]) -> None:
    for panel in panels:
        ids = {q.id for q in panel.queries}
        assert len(ids) == len(panel.queries), panel.title
        for expression in panel.expressions.values():
            assert set(re.findall(r"\bm\d+\b", expression)) <= ids, (panel.title, expression)
        hidden = {q.id for q in panel.queries if not q.shown}
        assert not hidden or panel.expressions, f"{panel.title}: hidden metrics no expression uses"


def test_the_compensation_rate_divides_compensated_sagas_by_sagas_started_per_type() -> None:
    panel = next(p for p in CLOUDWATCH if p.title.startswith("Compensation rate"))
    by_id = {q.id: q for q in panel.queries}
    for saga_type in STEPS_BY_SAGA:
        started = next(
            i for i, q in by_id.items() if q.name == names.SAGAS_STARTED and ("SagaType", saga_type) in q.dimensions
        )
        compensated = next(
            i
            for i, q in by_id.items()
            if q.name == names.SAGAS_ENDED and {("SagaType", saga_type), ("Outcome", "COMPENSATED")} <= q.dimensions
        )
        assert f"100 * FILL({compensated}, 0) / {started}" in panel.expressions.values(), saga_type


def _panel(title: str) -> Panel:
    return next(p for p in CLOUDWATCH if p.title == title)


def _dimension_values(panels: list[Panel], namespace: str, metric: str, key: str) -> set[str]:
    return {
        value
        for _, q in all_queries(panels)
        if (q.namespace, q.name) == (namespace, metric)
        for k, value in q.dimensions
        if k == key
    }


def test_golden_signals_cover_the_api_every_state_machine_and_every_step_function() -> None:
    machines = {n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine"}
    steps = {invoked_function(v) for m in machines for v in function_substitutions(RESOURCES[m]["Properties"]).values()}
    assert steps == {f"{state_of_step(s)}Function" for s in (*STEPS, "compensation_failed")}
    for metric in ("ExecutionsStarted", "ExecutionsFailed", "ExecutionTime", "ExecutionThrottled"):
        assert _dimension_values(CLOUDWATCH, "AWS/States", metric, "StateMachineArn") == {f"<{m}>" for m in machines}
    for metric in ("Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions"):
        functions = _dimension_values(CLOUDWATCH, "AWS/Lambda", metric, "FunctionName")
        assert {f"<{s}>" for s in steps} <= functions, metric
    for metric in ("ConcurrentExecutions", "Throttles"):
        assert "<APIHandler>" in _dimension_values(CLOUDWATCH, "AWS/Lambda", metric, "FunctionName")
    api = {q.name for _, q in all_queries(CLOUDWATCH) if q.namespace == "AWS/ApiGateway"}
    assert {"Count", "4XXError", "5XXError", "Latency"} <= api
    assert {q.stat for q in _panel("Step latency p99").queries} == {"p99"}
    assert {q.stat for q in _panel("Step latency p50").queries} == {"p50"}
    failed = _panel("FAILED sagas and the compensations that gave up").queries
    assert {("Outcome", "FAILED")} <= {d for q in failed if q.name == names.SAGAS_ENDED for d in q.dimensions}
    gave_up = {v for q in failed if q.name == names.COMPENSATIONS_FAILED for k, v in q.dimensions if k == "Step"}
    assert gave_up == COMPENSATIONS
    reconciler = {q.name for q in _panel("Reconciler: stuck sagas found and resumed").queries}
    assert reconciler == {names.STUCK_SAGAS_FOUND, names.STUCK_SAGAS_RESUMED, "Errors"}
    operators = _panel("Operators: sagas cancelled, resolved and bulk-retried").queries
    acted = {(dict(q.dimensions)["SagaType"], dict(q.dimensions)["Action"]) for q in operators}
    assert acted == {(t, a) for t in STEPS_BY_SAGA for a in ("cancel", "resolve", "bulk_retry")}
    outcomes = {v for q in _panel("Saga outcomes").queries for k, v in q.dimensions if k == "Outcome"}
    assert {"CANCELLED", "RESOLVED"} <= outcomes


def test_the_dashboards_are_what_make_dashboards_writes() -> None:
    template = (ROOT / "template.yaml").read_text()
    assert dashboard.with_body(template, dashboard.cloudwatch_body()) == template, "run `make dashboards`"
    assert GRAFANA_FILE.read_text() == dashboard.grafana_json(), "run `make dashboards`"


def test_the_packaged_stack_keeps_the_dashboard_and_its_api_panels_name_the_real_api_and_stage(
    packaged: Path,
) -> None:
    generated = load_template(packaged / "sam.yaml")
    assert template_body_source(generated) == template_body_source()
    api = generated["Resources"]["RestAPI"]["Properties"]
    assert "Name" not in api, "API Gateway names the API after the OpenAPI title"
    expected = {("ApiName", api["DefinitionBody"]["info"]["title"]), ("Stage", api["StageName"])}
    gateway = [q for _, q in all_queries(CLOUDWATCH + GRAFANA) if q.namespace == "AWS/ApiGateway"]
    assert gateway and all(q.dimensions == expected for q in gateway)
    referenced = set(SUBSTITUTION.findall(template_body_source(generated))) - {"AWS::Region"}
    assert referenced <= set(generated["Resources"])
