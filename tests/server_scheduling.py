"""`--split-by-server`: pytest-xdist hands the PostgreSQL tests to one process and every other test to the other.

The `alone` tests (soaks, the bench, bursts, a 1,000-saga backlog) each hold many connections and were run one at a
time, leaving one of the two cores idle. Split this way, each database server still serves one such test at a time,
while both cores work.
"""

from __future__ import annotations

import re

from xdist.scheduler import LoadScopeScheduling

POSTGRES_TESTS = "postgres"
OTHER_TESTS = "the others"
_RUNS_ON_POSTGRES = re.compile(r"\[(?:.*-)?postgres(?:-.*)?\]$")


def server_of(nodeid: str) -> str:
    """The work unit of a test: its parameters name the PostgreSQL backend, or they do not."""
    return POSTGRES_TESTS if _RUNS_ON_POSTGRES.search(nodeid) else OTHER_TESTS


class OneServerPerProcess(LoadScopeScheduling):
    """xdist's scope scheduling, with a test's database server as its scope: two units for two processes."""

    def _split_scope(self, nodeid: str) -> str:
        return server_of(nodeid)
