"""The core's shape (chalicelib/__init__.py): layers import downwards only, no cycles, no AWS SDK or web framework
in the domain, service and presentation, and nothing dev-only in what Lambda carries. The tooling's shape
(infra/__init__.py): its kinds import downwards only, the engine none of the others. import-linter checks the
contracts of pyproject.toml; these tests run it on the real tree and on copies with one bad import added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken_contract"),
    [
        ("chalicelib/domain/purchase.py", "from chalicelib.service import sagas", "layers import downwards only"),
        ("chalicelib/adapters/tables.py", "from chalicelib.domain import errors", "layers import downwards only"),
        ("chalicelib/domain/errors.py", "from chalicelib.domain import purchase", "No import cycles"),
        ("chalicelib/domain/returns.py", "import boto3", "no AWS SDK and no web framework"),
        ("chalicelib/service/sagas.py", "import chalice", "no AWS SDK and no web framework"),
        ("chalicelib/adapters/saga_cache.py", "import fakeredis", "no dev-only code"),
        ("chalicelib/entrypoints/cli.py", "from infra.tools import invariants", "no dev-only code"),
        ("infra/engine/local_server.py", "from infra.tools import demo", "the engine imports none of the others"),
        ("infra/engine/ports.py", "from infra.reports import cost", "the engine imports none of the others"),
        ("infra/engine/preflight.py", "from infra.deploy import package", "the engine imports none of the others"),
        ("infra/reports/cost.py", "from infra.tools import invariants", "kinds import downwards only"),
        ("infra/tools/soak.py", "from infra.reports import dashboard", "kinds import downwards only"),
        ("infra/tools/demo.py", "from infra.deploy.localstack import deploy", "kinds import downwards only"),
        ("infra/tools/ledger.py", "from infra.tools import invariants", "No import cycles"),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path: Path, module: str, bad_import: str, broken_contract: str) -> None:
    for package in ("chalicelib", "infra"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("tests", "bench"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")

    done = lint_imports(tmp_path)

    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(broken_contract in line for line in broken), done.stdout
