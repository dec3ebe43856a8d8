"""Sample log lines in docs/observability.md come from the code as it is: each message is one the code logs, at the
function and line its `location` names (Powertools' `function:line`). The recorded samples (docs/samples/) are
compared with fresh runs through a normalisation that masks only what varies from run to run."""

from __future__ import annotations

import json
import re
from pathlib import Path

from infra.tools import samples
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


def test_the_samples_normalisation_masks_ids_times_and_retry_counts_only() -> None:
    demo = samples.read("demo").output
    rerun = re.sub(r"\b[0-9a-f]{8}\b", "0123abcd", demo).replace("ReserveStock >", "ReserveStockx3 >")
    rerun = re.sub(r"\(\d+\.\d+s\)", "(81.07s)", rerun)
    assert samples.normalised("demo", rerun) == samples.normalised("demo", demo)
    for stale, changed in (
        ("COMPENSATED COMPENSATED", "COMPENSATED FAILED"),
        ("> ReleaseStock >", "> RestoreStock >"),
        ("on_hand 998->996", "on_hand 998->997"),
        ("refund CANCELLED", "refund ISSUED"),
    ):
        assert stale in demo
        assert samples.normalised("demo", demo.replace(stale, changed, 1)) != samples.normalised("demo", demo), stale

    lines = samples.read("log_lines").output
    first = json.loads(lines.splitlines()[0])
    moved = json.dumps(first | {"timestamp": "2027-01-01 00:00:00,000+0000", "latency_ms": 1.0, "attempt": 3})
    assert samples.normalised("log_lines", moved) == samples.normalised("log_lines", lines.splitlines()[0])
    relocated = json.dumps(first | {"location": "_failed:66"})
    assert samples.normalised("log_lines", relocated) != samples.normalised("log_lines", lines.splitlines()[0])

    history = samples.read("cli_history").output
    retimed = re.sub(r"\d{2}:\d{2}:\d{2}\.\d+", "23:59:59.000001", history)
    assert samples.normalised("cli_history", retimed) == samples.normalised("cli_history", history)
    assert samples.normalised("cli_history", history.replace("COMPENSATING", "RUNNING")) != samples.normalised(
        "cli_history", history
    )
