"""`make samples`: run the demo, a `make run` session and the CLI, and record what they print in docs/samples/;
`make docs` renders the recordings into the pages (cog).

Each recording starts with its command, date and load. The tests that run the same things compare their fresh
output with the recording through `normalised`, which masks only what changes from run to run (ids, times,
durations, attempt counts), so a stale recording fails a test and a new run of an unchanged program does not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess  # nosec B404
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from infra.engine.ports import free_loopback_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "docs" / "samples"
DATA = ".local/samples"
"""Where `make samples` keeps the fresh embedded data it runs on, relative to the repository."""
PORT = "8000"
"""The port the recorded commands name (`make run`'s default); they run on a free one."""

WAIT_FOR_SAGA = """wait_final() {
  for _ in $(seq 600); do
    curl -s "localhost:$PORT/sagas/$1" | python3 -c 'import json, sys
sys.exit(json.load(sys.stdin)["status"] not in ("COMPLETED", "COMPENSATED", "FAILED", "REJECTED"))' && return 0
    sleep 0.2
  done
  echo "saga $1 did not end" >&2; return 1
}"""
"""Run between a recorded command that starts a saga and the next, as someone reading the output would wait."""

README_SESSION = (
    'curl -s -X POST localhost:8000/purchases -H \'Content-Type: application/json\' -d \'{"customer_id": "alice", '
    '"sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"}\' | tee /tmp/saga.json',
    'SAGA=$(python3 -c \'import json; print(json.load(open("/tmp/saga.json"))["saga_id"])\')',
    "curl -s localhost:8000/sagas/$SAGA | python3 -m json.tool",
    "ORDER=$(curl -s localhost:8000/sagas/$SAGA | python3 -c 'import json, sys; "
    'print(json.load(sys.stdin)["result"]["order_id"])\')',
    "curl -s -X POST localhost:8000/returns -H 'Content-Type: application/json' -H 'Prefer: wait=20' -d "
    '"{\\"customer_id\\": \\"alice\\", \\"order_id\\": \\"$ORDER\\", \\"quantity\\": 1, \\"reason\\": \\"too small\\"}"'
    " -w '\\n%{http_code} Preference-Applied: %header{preference-applied}\\n'",
    "curl -s localhost:8000/products/SKU-MOUSE",
    "curl -s -X POST localhost:8000/purchases -H 'Content-Type: application/json' -d "
    '\'{"sku": "SKU-MOUSE", "quantity": 0}\'',
)
"""The README's session, as typed: a purchase, a return of part of it that waits for its outcome (Prefer: wait),
the stock, a bad request."""

CORRELATION_ID = "readme-1"
FLAKY_PURCHASE = (
    f"curl -s -X POST localhost:8000/purchases -H 'Content-Type: application/json' -H 'X-Correlation-Id: "
    f'{CORRELATION_ID}\' -d \'{{"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 2, '
    '"payment_token": "tok_flaky", "faults": {"confirm_sale": "fail"}}\' | tee /tmp/saga.json'
)
"""A purchase whose payment fails once and whose sale then fails: the saga of the log and CLI samples (the same
request as tests/integration/test_cli.py's)."""
CLI_SESSION = (
    FLAKY_PURCHASE,
    README_SESSION[1],
    ".venv/bin/python -m chalicelib status $SAGA",
    ".venv/bin/python -m chalicelib history $SAGA",
)
STARTS_A_SAGA = {README_SESSION[1]: "SAGA"}
"""After these commands, wait until the saga in that variable has ended (the return waits in its own call)."""
SEPARATOR = "\x1e"
SHOWN_FILE = "/tmp/saga.json"  # noqa: S108  # nosec B108 - the file the shown commands name; they run on a private one


@dataclass(frozen=True)
class Sample:
    command: str
    context: str
    recorded: str
    load_average: str
    output: str

    def block(self) -> str:
        """The recording as a page shows it: when and how it was made, then the output in a fence."""
        return (
            f"Recorded on {self.recorded} by `make samples`, which ran `{self.command}` {self.context} (load average "
            f"{self.load_average}):\n\n```\n{self.output}\n```\n"
        )


def read(name: str) -> Sample:
    header, _, output = (SAMPLES / f"{name}.txt").read_text().partition("\n\n")
    fields = dict(line.split(": ", 1) for line in header.splitlines())
    return Sample(fields["command"], fields["context"], fields["recorded"], fields["load average"], output.rstrip("\n"))


def show(name: str) -> str:
    """For a page's cog block: the recording `name` with its date and command."""
    return read(name).block()


def record(name: str, command: str, context: str, output: str) -> None:
    """Write the recording, unless the one there differs only in what `normalised` masks: its date stays true
    of it."""
    path = SAMPLES / f"{name}.txt"
    kept = read(name) if path.exists() else None
    if kept and (kept.command, kept.context, normalised(name, kept.output)) == (
        command,
        context,
        normalised(name, output),
    ):
        print(f"{path.relative_to(ROOT)}: unchanged")
        return
    recorded = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = f"{os.getloadavg()[0]:.1f}"
    header = f"command: {command}\ncontext: {context}\nrecorded: {recorded}\nload average: {load}\n\n"
    path.write_text(header + output.rstrip("\n") + "\n")
    print(f"{path.relative_to(ROOT)}: written")


ID = re.compile(r"\b[0-9a-f]{32}\b")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
LOG_VARYING = {
    "timestamp",
    "saga_id",
    "correlation_id",
    "function_request_id",
    "latency_ms",
    "attempt",
    "xray_trace_id",
}


def normalised(name: str, text: str) -> str:
    """`text`, a fresh or recorded output of sample `name`, with what legitimately varies masked: ids, times,
    durations, retry counts. Statuses, paths, effects, messages and the lines themselves stay."""
    if name == "log_lines":
        return "\n".join(_normalised_log_line(line) for line in text.strip().splitlines())
    text = TIME.sub("<time>", ID.sub("<id>", text.strip()))
    if name == "demo":
        text = re.sub(r"\b[0-9a-f]{8}\b", "<id>", text)
        text = re.sub(r"\(\d+\.\d+s\)", "(<seconds>)", text)
        text = re.sub(r"embedded SQLite \([^)]*\)", "embedded SQLite (<file>)", text)
        text = re.sub(r"(?m)^(\s+path:.*)$", lambda line: re.sub(r"([a-z])x\d+\b", r"\1", line.group(1)), text)
    if name in ("cli_status", "cli_history"):
        text = re.sub(r"(?m)^(\S+ +(?:execute|compensate|saga) +[A-Z_]+ +)\d+", r"\1<n>", text)
        text = re.sub(r"(?m)^(<time> +\S+ +(?:execute|compensate|saga) +[A-Z_]+ +)\d+", r"\1<n>", text)
    if name == "readme_session":
        text = re.sub(r'"(return_id|attempts)": ?\d+', r'"\1": <n>', text)
    return "\n".join(re.sub(r" {2,}", " ", line).rstrip() for line in text.splitlines())


def _normalised_log_line(line: str) -> str:
    record = json.loads(line)
    return json.dumps({key: "<varies>" if key in LOG_VARYING else value for key, value in record.items()})


def demo_environment(data: Path) -> dict[str, str]:
    """The environment `make demo` runs in, on fresh embedded data under `data` (the stock starts as seeded)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL")}
    return env | {
        "DATABASE_URL": f"sqlite:///{data / 'saga.db'}",
        "PROVIDER_DATABASE_URL": f"sqlite:///{data / 'provider.db'}",
        "SAGA_ALLOW_FAULTS": "true",
        "PYTHONPATH": str(ROOT),
    }


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # nosec B603
        [sys.executable, "-m", "infra.tools.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def run_session(commands: tuple[str, ...], port: int, env: dict[str, str]) -> str:
    """`commands` typed in one shell against `make run`'s server on `port`, each with what it printed, waiting
    for each saga started to end before the next command; as a terminal shows them, prompt `$ `."""
    with tempfile.TemporaryDirectory() as scratch:
        script = ["set -e", f"PORT={port}", WAIT_FOR_SAGA]
        for command in commands:
            ran = command.replace(f"localhost:{PORT}", f"localhost:{port}").replace(SHOWN_FILE, f"{scratch}/saga.json")
            script += [ran, f"printf '\\n{SEPARATOR}\\n'"]
            if command in STARTS_A_SAGA:
                script.append(f"wait_final ${STARTS_A_SAGA[command]}")
        done = subprocess.run(  # noqa: S603  # nosec B603 - our own commands
            ["/bin/bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
    if done.returncode != 0:
        raise RuntimeError(f"the session failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    printed = done.stdout.split(f"\n{SEPARATOR}\n")
    lines = []
    for command, output in zip(commands, printed, strict=False):
        lines.append(f"$ {command}")
        if output.strip("\n"):
            lines.append(output.strip("\n"))
    return "\n".join(lines)


def cli_outputs(session: str) -> dict[str, str]:
    """What each CLI command of `run_session(CLI_SESSION, ...)`'s output printed."""
    parts = re.split(r"(?m)^\$ (.*)$", session)
    printed = dict(zip(parts[1::2], parts[2::2], strict=True))
    return {
        name: printed[command].strip("\n")
        for name, command in (("cli_status", CLI_SESSION[2]), ("cli_history", CLI_SESSION[3]))
    }


def step_log_lines(server_output: str, correlation_id: str = CORRELATION_ID) -> str:
    """The first `step failed` and `step succeeded` lines of process_payment for `correlation_id`."""
    records = [line for line in server_output.splitlines() if line.startswith('{"level"')]
    chosen = []
    for message in ("step failed", "step succeeded"):
        chosen += [
            line
            for line in records
            if (r := json.loads(line))["message"] == message
            and r.get("step") == "process_payment"
            and r.get("correlation_id") == correlation_id
        ][:1]
    return "\n".join(chosen)


@contextmanager
def local_server(env: dict[str, str], log: Path) -> Iterator[int]:
    """`make run`'s server on a free port over `env`'s data stores; its output goes to `log`."""
    port = free_loopback_port()
    env = env | {"PORT": str(port), "PROVIDER_PORT": str(free_loopback_port())}
    with log.open("w") as output:
        process = subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "infra.engine.local_server"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def fresh_data() -> Path:
    """DATA emptied, as a path relative to the repository (the tools run there), so the demo names it so."""
    (ROOT / DATA).mkdir(parents=True, exist_ok=True)
    for old in (ROOT / DATA).glob("*.db*"):
        old.unlink()
    return Path(DATA)


def main() -> int:
    SAMPLES.mkdir(exist_ok=True)
    fresh = f"on fresh embedded data in {DATA}/, the stock as seeded, with embedded Redis"
    demo = run_demo(demo_environment(fresh_data()))
    if demo.returncode != 0:
        print(demo.stdout + demo.stderr, file=sys.stderr)
        return 1
    record("demo", "make demo", fresh, demo.stdout)

    env = demo_environment(fresh_data())
    log = ROOT / DATA / "server.log"
    with local_server(env, log) as port:
        readme = run_session(README_SESSION, port, env)
        cli = cli_outputs(run_session(CLI_SESSION, port, env))
    record("readme_session", "make run", f"{fresh}, then these commands in another terminal", readme)
    flaky = f"{fresh}, then `{FLAKY_PURCHASE}`"
    record("log_lines", "make run", f"{flaky}; two of the lines it printed", step_log_lines(log.read_text()))
    after = f"after `make run` {flaky}"
    record("cli_status", CLI_SESSION[2], after, cli["cli_status"])
    record("cli_history", CLI_SESSION[3], after, cli["cli_history"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
