"""The core's shape (chalicelib/__init__.py): layers import downwards only, no cycles, no AWS SDK or web framework
in the domain, service and presentation, and nothing dev-only in what Lambda carries. import-linter checks the
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
        ("domain/purchase.py", "from chalicelib.service import sagas", "layers import downwards only"),
        ("adapters/tables.py", "from chalicelib.domain import errors", "layers import downwards only"),
        ("domain/errors.py", "from chalicelib.domain import purchase", "No import cycles"),
        ("domain/returns.py", "import boto3", "no AWS SDK and no web framework"),
        ("service/sagas.py", "import chalice", "no AWS SDK and no web framework"),
        ("adapters/saga_cache.py", "import fakeredis", "no dev-only code"),
        ("entrypoints/cli.py", "from infra import invariants", "no dev-only code"),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path: Path, module: str, bad_import: str, broken_contract: str) -> None:
    shutil.copytree(ROOT / "chalicelib", tmp_path / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("infra", "tests", "bench"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "invariants.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "chalicelib" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # noqa\n")

    done = lint_imports(tmp_path)

    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(broken_contract in line for line in broken), done.stdout
