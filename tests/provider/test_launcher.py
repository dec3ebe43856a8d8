"""Starting and stopping the provider: it never outlives its parent, and a busy port is one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from payment_provider.config import ProviderSettings, SettingsError
from payment_provider.launcher import REPOSITORY, ProviderStartError, start_provider


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def is_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie nobody reaped yet counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def run_module(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payment_provider", *arguments],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_stop_ends_the_provider_cleanly(tmp_path: Path) -> None:
    running = start_provider(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert running.url == f"http://127.0.0.1:{running.port}"
    assert is_alive(running.pid)
    assert running.stop() == 0
    assert not is_alive(running.pid)
    assert "payment provider listening on" in running.output()


def test_the_provider_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    parent_code = (
        "import sys, time\n"
        "from payment_provider.launcher import start_provider\n"
        "provider = start_provider(database_url=sys.argv[1])\n"
        "print(provider.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, f"sqlite:///{tmp_path / 'ledger.db'}"],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    provider_pid = int(parent.stdout.readline())
    try:
        assert is_alive(provider_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        deadline = time.monotonic() + 5
        while is_alive(provider_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_alive(provider_pid)
    finally:
        if is_alive(provider_pid):
            os.kill(provider_pid, signal.SIGKILL)


def test_a_busy_port_is_one_line_and_exit_status_2(busy_port: int, tmp_path: Path) -> None:
    done = run_module({"PROVIDER_PORT": str(busy_port), "PROVIDER_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"})
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert str(busy_port) in line
    assert "already in use" in line
    assert "PROVIDER_PORT=" in line


def test_a_bad_setting_is_one_line_naming_it_and_exit_status_2() -> None:
    done = run_module({"PROVIDER_FAULT_RATE": "2"})
    assert done.returncode == 2
    assert done.stderr.strip() == "payment provider: PROVIDER_FAULT_RATE=2.0 must be between 0 and 1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROVIDER_PORT", "eighty"),
        ("PROVIDER_PORT", "70000"),
        ("PROVIDER_LOST_RATE", "nan"),
        ("REFUND_SETTLE_SECONDS", "-1"),
    ],
)
def test_settings_refuse_bad_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ProviderSettings.from_env({name: value})


def test_settings_default_to_the_documented_values() -> None:
    settings = ProviderSettings.from_env({})
    assert (settings.host, settings.port, settings.api_key, settings.database_url) == (
        "127.0.0.1",
        8010,
        "sk_test_local",
        None,
    )
    assert (settings.refund_settle_seconds, settings.lost_response_hold_seconds) == (300.0, 30.0)
    assert (settings.fault_rate, settings.lost_rate, settings.latency_ms, settings.seed) == (0.0, 0.0, 0.0, None)


def test_the_launcher_reports_a_provider_that_could_not_start(busy_port: int, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderStartError, match="already in use"):
        start_provider(port=busy_port, database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert time.monotonic() - started < 10


def test_sigint_also_stops_it_cleanly(tmp_path: Path) -> None:
    running = start_provider(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=5) == 0
