"""`make run`: the API on 127.0.0.1 (PORT, default 8000), backed by the local engine behind a local AWS endpoint.

Sagas started with curl run on moto's interpreter, each step in a worker process that behaves as a Lambda
execution environment (LOCAL_LAMBDA_TIMEOUT shortens every function's timeout), against the embedded default or
DATABASE_URL / REDIS_URL; the functions' log lines (START, JSON lines, END, REPORT) are printed as they come. At
start, sagas a killed earlier run left unfinished are run to a final status. Ctrl-C (or SIGTERM) stops the
server, the endpoint and the workers; the workers also die with the server if it is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from chalice.cli.factory import CLIFactory
from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer, ThreadedHTTPServer

from chalicelib.adapters import database
from chalicelib.domain import catalogue
from chalicelib.service import reconciler
from chalicelib.service.executions import boto3_step_functions
from chalicelib.settings import get_settings
from infra.local_engine import LocalEngine
from infra.local_functions import print_logs

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class _QueuedHTTPServer(ThreadedHTTPServer):
    # Chalice's server keeps a listen backlog of 5: concurrent clients beyond it get connection resets.
    request_queue_size = 128
    daemon_threads = True


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    aws_port = int(os.environ.get("LOCAL_AWS_PORT", "0"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "moto.stepfunctions.parser"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _stop)

    settings = get_settings()
    database.migrate()
    with database.UnitOfWork() as uow:
        catalogue.seed(uow.session)
        uow.commit()
    provider_port = int(os.environ.get("PROVIDER_PORT", "8010"))
    with LocalEngine(endpoint_port=aws_port, log_sink=print_logs, provider_port=provider_port) as engine:
        from app import app

        # The engine starts empty, so every unfinished saga of an earlier run has lost its execution: no grace.
        resumed = reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed
        if resumed:
            print(f"resumed {len(resumed)} saga(s) left unfinished by an earlier run", flush=True)

        config = CLIFactory(str(ROOT)).create_config_obj(chalice_stage_name="dev")
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
        server = LocalDevServer(app, config, HOST, port, server_cls=_QueuedHTTPServer)
        data = "PostgreSQL" if settings.database_url else f"embedded SQLite ({settings.effective_database_url})"
        cache = "Redis" if settings.redis_url else "embedded Redis (fakeredis on loopback)"
        print(f"Saga API on http://{HOST}:{port}  (local AWS endpoint {engine.endpoint_url}; {data}; {cache})")
        print(f"payment provider at {settings.payment_provider_url} (PAYMENT_PROVIDER_URL, else PROVIDER_PORT)")
        timeouts = f"{settings.local_lambda_timeout:g} s" if settings.local_lambda_timeout else "as in template.yaml"
        print(
            f"faults {'accepted' if settings.allow_faults else 'refused'} (SAGA_ALLOW_FAULTS); each step runs in a "
            f"worker process, function timeouts {timeouts} (LOCAL_LAMBDA_TIMEOUT); Ctrl-C stops."
        )
        sys.stdout.flush()
        try:
            server.server.serve_forever()
        except KeyboardInterrupt:
            print("stopping")
        finally:
            server.server.server_close()
    return 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
