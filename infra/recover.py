"""`make recover`: after the local engine was killed, run every unfinished saga to a final status.

`make run` does the same when it starts. Exits non-zero if a resumed saga is still not final after the wait.
"""

from __future__ import annotations

import logging
import sys
import time

from chalicelib import db, executions, recovery
from chalicelib.models import Saga
from infra.local_engine import LocalEngine

WAIT_SECONDS = 600


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    db.migrate()
    with LocalEngine():
        resumed = recovery.resume_unfinished(executions.start_execution, executions.execution_status)
        print(f"resumed {len(resumed)} unfinished saga(s)", flush=True)
        deadline = time.monotonic() + WAIT_SECONDS
        pending = set(resumed)
        while pending and time.monotonic() < deadline:
            with db.UnitOfWork() as uow:
                for saga_id in list(pending):
                    if uow.session.get_one(Saga, saga_id).status not in recovery.UNFINISHED:
                        pending.discard(saga_id)
            time.sleep(0.1)
    for saga_id in sorted(pending):
        print(f"saga {saga_id} is still not final after {WAIT_SECONDS} s", file=sys.stderr)
    print(f"{len(resumed) - len(pending)} of {len(resumed)} resumed sagas reached a final status")
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main())
