"""What README.md and docs/ name exists: design §5's variables are the settings' (both ways), and every make
target, repository path, HTTP route, saga status, relative link and #anchor the pages name is there."""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.domain.contracts import AttemptStatus, SagaStatus
from chalicelib.observability.metric_names import METRICS, SERVICE_DIMENSION
from chalicelib.settings import Settings
from tests.docs.pages import PAGES, ROOT, anchors, code_spans, links

TOP_LEVEL = {path.name for path in ROOT.iterdir()} - {".venv", ".local", "out", ".localstack"}
CODE_DIRS = ("chalicelib", "payment_provider", "infra", "bench", "local_lambda")
HTTP_METHOD = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) (/\S*)")
STATUS_LIKE = re.compile(r"\b[A-Z][A-Z_]{3,}(?:ED|ING)\b")
FOREIGN_ROUTES = {"/secretsmanager/get"}
"""Routes the pages name that others serve: the AWS Parameters and Secrets Lambda Extension's."""
OUTSIDE_STATUSES = {"MISSED", "WARNING", "COMMITTED", "LOCKED"}
"""Words shaped like a status that are not one: the bench's verdict, a log level, SQL's READ COMMITTED and SKIP
LOCKED."""


def design_variables() -> set[str]:
    design = (ROOT / "docs" / "design.md").read_text()
    section = design[design.index("## 5. Configuration") : design.index("## 6.")]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_design_section_5_lists_every_variable_the_settings_read_and_no_other() -> None:
    read = {field.alias for field in Settings.model_fields.values() if field.alias}
    listed = design_variables()
    assert sorted(read - listed) == [], "read by chalicelib/settings.py, missing from design §5"
    assert sorted(listed - read) == [], "in design §5, read by no setting"


def observability_metrics() -> dict[str, tuple[str, set[str]]]:
    """docs/observability.md's metrics table: metric -> (unit, the dimensions its cell names before any colon)."""
    page = (ROOT / "docs" / "observability.md").read_text()
    section = page[page.index("## Metrics") : page.index("## Dashboards")]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| `")]
    return {
        name.strip(" `"): (unit.strip(), set(re.findall(r"`(\w+)`", cell.split(":")[0]))) for name, unit, cell in rows
    }


def test_the_observability_page_lists_every_metric_with_its_unit_and_dimensions() -> None:
    catalogued = {name: (unit, set(dimensions) - {SERVICE_DIMENSION}) for name, (unit, dimensions) in METRICS.items()}
    assert observability_metrics() == catalogued


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    rules = re.findall(r"^([a-z][\w -]*?):(?![=:])", makefile, re.M)
    return {target for rule in rules for target in rule.split()}


def test_every_make_target_the_pages_name_exists() -> None:
    targets = make_targets()
    named = {
        (page.name, target)
        for page in PAGES
        for span in code_spans(page)
        for target in re.findall(r"(?:^|[\s;(])make ([a-z][\w-]*)", span)
    }
    unknown = sorted((page, target) for page, target in named if target not in targets)
    assert not unknown, unknown


def repository_path(span: str) -> str | None:
    """The repository path a code span names, if it names one: a file or folder under a top-level entry."""
    path = span.split("::", 1)[0].split("#", 1)[0].rstrip(":,")
    if not re.fullmatch(r"[\w.-]+(?:/[\w.*-]+)*/?", path) or path.split("/", 1)[0] not in TOP_LEVEL:
        return None
    return path if "/" in path or "." in path else None


def test_every_repository_path_the_pages_name_exists() -> None:
    missing = []
    for page in PAGES:
        for span in code_spans(page):
            path = repository_path(span)
            if path and not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
                missing.append((page.name, path))
    assert not missing, missing


def route_shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0]).rstrip("/") or "/"


def test_every_route_the_pages_name_is_served() -> None:
    app = (ROOT / "app.py").read_text()
    served = {
        (method, route_shape(path))
        for path, methods in re.findall(r'@app\.route\("([^"]+)", methods=\[([^\]]+)\]', app)
        for method in re.findall(r'"(\w+)"', methods)
    }
    provider = (ROOT / "payment_provider" / "http_server.py").read_text()
    served |= {(method, route_shape(path)) for method, path in re.findall(r'"(\w+)", _path\("([^"]+)"\)', provider)}
    unknown = []
    for page in PAGES:
        for span in code_spans(page):
            for part in span.split(", "):
                found = HTTP_METHOD.match(part)
                shape = route_shape(found.group(1)) if found else ""
                if found and shape not in FOREIGN_ROUTES and (part.split()[0], shape) not in served:
                    unknown.append((page.name, part))
    assert not unknown, unknown


def test_every_status_the_pages_name_is_one_the_code_knows() -> None:
    code = "\n".join(path.read_text() for folder in CODE_DIRS for path in (ROOT / folder).rglob("*.py"))
    known = {status.value for status in (*SagaStatus, *AttemptStatus)}
    known |= set(re.findall(r"[\"']([A-Z][A-Z_]+)[\"']", code)) | set(re.findall(r"^\s*([A-Z][A-Z_]+) = ", code, re.M))
    named = {(page.name, word) for page in PAGES for word in STATUS_LIKE.findall(page.read_text())}
    unknown = sorted((page, word) for page, word in named if word not in known | OUTSIDE_STATUSES)
    assert not unknown, unknown


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            if not linked.exists():
                broken.append((page.name, target, "no such file"))
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append((page.name, target, "no such heading"))
    assert not broken, broken


def test_the_slugs_are_githubs() -> None:
    from tests.docs.pages import github_slug

    assert github_slug("7.3 Deploys with sagas in flight") == "73-deploys-with-sagas-in-flight"
    assert github_slug("`make bench`") == "make-bench"
    assert github_slug("What a step imports, and why") == "what-a-step-imports-and-why"
    assert github_slug("Under load: `make soak`") == "under-load-make-soak"


def test_the_pages_are_read() -> None:
    assert {page.name for page in PAGES} >= {"README.md", "design.md", "testing.md"}
    assert Path(ROOT / "docs" / "design.md") in PAGES
