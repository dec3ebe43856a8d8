"""Every block `make docs` writes into README.md and docs/ (between cog markers) is what it would write now."""

from __future__ import annotations

import subprocess
import sys

from tests.docs.pages import PAGES, ROOT


def test_no_generated_block_is_stale() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cogapp", "-I", str(ROOT), "--check", "--diff", *map(str, PAGES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    stale = [line for line in done.stdout.splitlines() if not line.startswith("Checking ") or "(changed)" in line]
    assert done.returncode == 0, "stale: run `make docs`\n" + "\n".join(stale)[-3000:] + done.stderr[-3000:]


def test_the_performance_page_is_generated_from_the_results_file() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    assert page.count("[[[cog") >= 4 and "report.tables(" in page


def test_the_capacity_page_is_generated_from_the_results_file_and_the_quotas() -> None:
    page = (ROOT / "docs" / "capacity.md").read_text()
    for table in ("per_saga", "database_tier", "quotas", "ceilings", "rates", "findings"):
        assert f"capacity_report.{table}()" in page
