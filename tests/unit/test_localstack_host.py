"""infra/deploy/localstack/host.py fails clearly when LocalStack cannot start, and leaves nothing running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.deploy.localstack.host import HostLocalStack, LocalStackDidNotStart


def test_a_localstack_that_exits_at_once_is_reported_with_the_tail_of_its_log(tmp_path: Path) -> None:
    # This interpreter has no localstack package: the process exits with an import error.
    instance = HostLocalStack(workdir=tmp_path, python=Path(sys.executable), startup_timeout_seconds=30)
    with pytest.raises(LocalStackDidNotStart, match=r"exited with code 1(.|\n)*No module named .?localstack"):
        instance.start()
    assert instance.process is None


def test_a_missing_virtualenv_names_the_command_that_makes_it(tmp_path: Path) -> None:
    instance = HostLocalStack(workdir=tmp_path, python=tmp_path / "no-such-python")
    with pytest.raises(LocalStackDidNotStart, match="make test-localstack"):
        instance.start()
