"""`--split-by-server`: pytest-xdist hands the tests on MySQL, and those on no one backend, to one process, and the
tests on PostgreSQL and on the embedded backend to the other.

The `alone` tests (soaks, the bench, bursts, a 1,000-saga backlog) each hold many connections and were run one at a
time, leaving one of the two cores idle. Split this way, both cores work and each database server serves one
process's such tests, save the bench, which runs on every backend at once (PostgreSQL's connections peaked at 66
of its 100). The embedded backend holds no server's connections: it evens the two processes out.
"""

from __future__ import annotations

import re

from xdist.scheduler import LoadScopeScheduling

POSTGRES_AND_EMBEDDED = "the tests on PostgreSQL and on the embedded backend"
MYSQL_AND_THE_REST = "the tests on MySQL and on no one backend"
_ON_POSTGRES_OR_EMBEDDED = re.compile(r"\[(?:.*-)?(?:postgres|embedded)(?:-.*)?\]$")


def server_of(nodeid: str) -> str:
    """A test's work unit, from the backend its parameters name."""
    return POSTGRES_AND_EMBEDDED if _ON_POSTGRES_OR_EMBEDDED.search(nodeid) else MYSQL_AND_THE_REST


class OneServerPerProcess(LoadScopeScheduling):
    """xdist's scope scheduling, with a test's database server as its scope: two units for two processes."""

    def _split_scope(self, nodeid: str) -> str:
        return server_of(nodeid)
