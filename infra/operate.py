"""Operator commands on the local engine (the data of DATABASE_URL/REDIS_URL, or the embedded default):

    python -m infra.operate recover          run every saga a killed `make run` left unfinished to a final status
    python -m infra.operate retry SAGA_ID    retry a FAILED saga's compensations, once their cause is fixed

Each waits until the sagas it started are final and exits non-zero if one is not, or if the retry is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from chalicelib.observability import telemetry
from chalicelib.service import recovery
from infra.local_engine import LocalEngine

WAIT_SECONDS = 600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.operate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("recover", help="run unfinished sagas to a final status")
    retry = commands.add_parser("retry", help="retry a FAILED saga's compensations")
    retry.add_argument("saga_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    telemetry.quiet()
    database.migrate()
    with LocalEngine():
        if args.command == "recover":
            started = recovery.resume_unfinished(
                step_functions.start_execution, step_functions.execution_status, step_functions.execution_arn_for
            )
            print(f"resumed {len(started)} unfinished saga(s)", flush=True)
        else:
            try:
                saga = recovery.retry_failed(args.saga_id, step_functions.start_execution)
            except recovery.NotRetryable as error:
                print(error, file=sys.stderr)
                return 1
            if saga is None:
                print(f"no saga {args.saga_id}", file=sys.stderr)
                return 1
            started = [saga.id]
            print(f"retrying the compensations of saga {saga.id}", flush=True)
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
                if status not in recovery.UNFINISHED:
                    final[saga_id] = status
        time.sleep(0.1)
    return final


if __name__ == "__main__":
    sys.exit(main())
