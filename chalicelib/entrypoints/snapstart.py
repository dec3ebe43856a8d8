"""SnapStart hooks of the step functions (docs/performance.md#snapstart).

With SnapStart, Lambda initialises a published version once, snapshots the process, and resumes every new
execution environment from that snapshot. What the snapshot holds is shared by every environment resumed from it,
for as long as the version lives: so before the snapshot, the connections are closed and whatever the first event
would import or build is done ahead; after each restore, everything that depends on the moment or must be unique is
dropped and made again at first use: database and Redis connections, the secrets they were opened with (rotated
since, perhaps), the provider's client with its API key, and the random generator's seed.

Connections reopen at first use, not in the hook: a connection opened in the hook would cost the restored
invocation the same time. A restored function has no AWS_SESSION_TOKEN (its credentials come from the container
credentials endpoint), so its secrets are read with boto3, not through the Parameters and Secrets extension.

The runtime runs the hooks it finds registered in `snapshot_restore_py` (bundled with the managed runtimes); they
never run without SnapStart.
"""

from __future__ import annotations

import random

from snapshot_restore_py import register_after_restore, register_before_snapshot

from chalicelib.adapters import database, idempotency, payment_provider, saga_cache
from chalicelib.settings import reset_secrets


def before_snapshot() -> None:
    database.prime()
    _forget_connections_and_secrets()


def after_restore() -> None:
    _forget_connections_and_secrets()
    # Every environment resumed from one snapshot would otherwise draw the same "random" numbers.
    random.seed()


def _forget_connections_and_secrets() -> None:
    database.reset_engine()
    idempotency.reset_idempotency()
    saga_cache.reset_redis()
    payment_provider.reset_client()
    reset_secrets()


register_before_snapshot(before_snapshot)
register_after_restore(after_restore)
