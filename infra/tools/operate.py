"""Operator commands on the local engine (the data of DATABASE_URL/REDIS_URL, or the embedded default):

    python -m infra.tools.operate reconcile [--grace SECONDS]   one reconciler pass: resume the sagas RUNNING or
                                                          COMPENSATING without a live execution, quiet for the
                                                          grace period (RECONCILER_GRACE_SECONDS, 120; 0: all)
    python -m infra.tools.operate retry SAGA_ID                 retry a FAILED saga's compensations once their cause
                                                          is fixed, or a saga stuck without a live execution

Each waits until the sagas it started are final and exits non-zero if one is not, or if the retry is refused.
A local engine starts empty: every execution of an earlier `make run` died with it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.observability import telemetry
from chalicelib.service import reconciler, recovery
from chalicelib.service.executions import UNFINISHED, boto3_step_functions
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine

WAIT_SECONDS = 600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.tools.operate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    reconcile = commands.add_parser("reconcile", help="resume the sagas left without a live execution")
    reconcile.add_argument("--grace", type=float, default=None, help="seconds a saga must have been quiet")
    retry = commands.add_parser("retry", help="retry a FAILED or stuck saga")
    retry.add_argument("saga_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    telemetry.quiet()
    database.migrate()
    with LocalEngine():
        if args.command == "reconcile":
            grace = get_settings().reconciler_grace_seconds if args.grace is None else args.grace
            done = reconciler.reconcile(boto3_step_functions(), grace)
            started = done.resumed
            rest = "" if done.drained else "; its time ran out, run it again for the rest"
            print(f"found {len(done.found)} stuck saga(s), resumed {len(started)}{rest}", flush=True)
        else:
            try:
                saga = recovery.retry(args.saga_id, boto3_step_functions())
            except recovery.NotRetryable as error:
                print(error, file=sys.stderr)
                return 1
            if saga is None:
                print(f"no saga {args.saga_id}", file=sys.stderr)
                return 1
            started = [saga.id]
            print(f"retrying saga {saga.id} ({saga.status})", flush=True)
        final = _wait_until_final(started)
    for saga_id in started:
        print(f"{saga_id} {final.get(saga_id, 'still not final')}")
    return 0 if len(final) == len(started) else 1


def _wait_until_final(saga_ids: list[str]) -> dict[str, str]:
    final: dict[str, str] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while len(final) < len(saga_ids) and time.monotonic() < deadline:
        with database.UnitOfWork() as uow:
            for saga_id in saga_ids:
                status = uow.session.get_one(Saga, saga_id).status
                if status not in UNFINISHED:
                    final[saga_id] = status
        time.sleep(0.1)
    return final


if __name__ == "__main__":
    sys.exit(main())
