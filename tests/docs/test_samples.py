"""Sample log lines in docs/observability.md come from the code as it is: each message is one the code logs, at the
function and line its `location` names (Powertools' `function:line`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.docs.pages import FENCE, ROOT

LOGGING_CODE = [*(ROOT / "chalicelib").rglob("*.py")]


def sample_log_lines(page: Path) -> list[dict[str, object]]:
    lines = [line for block in FENCE.findall(page.read_text()) for line in block.splitlines()]
    return [json.loads(line) for line in lines if line.startswith('{"level"')]


def logged_at(location: str, message: str) -> bool:
    """Whether some module logs `message` in function `location`'s name, at its line."""
    function, line = location.rsplit(":", 1)
    at = int(line)
    for path in LOGGING_CODE:
        source = path.read_text().splitlines()
        if at > len(source) or not any(f'"{message}"' in text for text in source[at - 1 : at + 2]):
            continue
        enclosing = [text for text in source[:at] if re.match(r"\s*def \w+", text)]
        if enclosing and re.match(rf"\s*def {re.escape(function)}\(", enclosing[-1]):
            return True
    return False


def test_the_observability_page_shows_log_lines_the_code_writes() -> None:
    samples = sample_log_lines(ROOT / "docs" / "observability.md")
    assert samples, "the page shows sample log lines"
    wrong = [(s["location"], s["message"]) for s in samples if not logged_at(str(s["location"]), str(s["message"]))]
    assert not wrong, f"no such log call in chalicelib/: {wrong}"
