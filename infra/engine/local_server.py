"""`make run`: the API on 127.0.0.1 (PORT, default 8000), backed by the local engine behind a local AWS endpoint.

Sagas started with curl run on moto's interpreter, each step in a worker process that behaves as a Lambda
execution environment (LOCAL_LAMBDA_TIMEOUT shortens every function's timeout), against the embedded default or
DATABASE_URL / REDIS_URL; the functions' log lines (START, JSON lines, END, REPORT) are printed as they come. At
start, sagas a killed earlier run left unfinished are run to a final status. Ctrl-C (or SIGTERM) stops the
server, the endpoint and the workers; the workers also die with the server if it is killed. A thread works
through the operators' bulk retries (`POST /sagas/retry`) as the deployed BulkRetryFunction does, polling every
BULK_RETRY_POLL_SECONDS.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from chalice.cli.factory import CLIFactory
from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer, ThreadedHTTPServer

from chalicelib.adapters import database
from chalicelib.service import bulk_retry, products, reconciler
from chalicelib.service.executions import boto3_step_functions
from chalicelib.settings import get_settings
from infra.engine import preflight
from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import print_logs
from infra.engine.ports import NagleOffServer

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PORTS = (("PORT", "8000"), ("LOCAL_AWS_PORT", "0"), ("PROVIDER_PORT", "8010"))
"""The API's, the local AWS endpoint's (0: a free one) and the payment provider's."""
BULK_RETRY_POLL_SECONDS = 1.0
"""How often the local worker looks for open bulk retries (the deployed one: every minute, on its schedule)."""


class ApiHTTPServer(NagleOffServer, ThreadedHTTPServer):
    """Chalice's threaded server, with a listen backlog of 128 instead of 5 (concurrent clients beyond it got
    connection resets), and Nagle's algorithm off: chalice writes a response's headers and body apart, so on a
    kept-alive connection (a browser's, the console's) the body waited for the client's delayed ACK."""

    request_queue_size = 128
    daemon_threads = True


def main() -> int:
    ports = {name: _port(name, default) for name, default in PORTS}
    for name, chosen in ports.items():
        if name != "PROVIDER_PORT" or not os.environ.get("PAYMENT_PROVIDER_URL"):
            preflight.check_port_free(chosen, name, "make run")
    port, aws_port, provider_port = ports.values()
    preflight.check_stores()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "moto.stepfunctions.parser"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _stop)

    settings = get_settings()
    database.migrate()
    products.seed_catalogue()
    with LocalEngine(endpoint_port=aws_port, log_sink=print_logs, provider_port=provider_port) as engine:
        from app import app

        # The engine starts empty, so every unfinished saga of an earlier run has lost its execution: no grace.
        resumed = reconciler.reconcile(boto3_step_functions(), grace_seconds=0).resumed
        if resumed:
            print(f"resumed {len(resumed)} saga(s) left unfinished by an earlier run", flush=True)

        config = CLIFactory(str(ROOT)).create_config_obj(chalice_stage_name="dev")
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
        server = LocalDevServer(app, config, HOST, port, server_cls=ApiHTTPServer)
        data = preflight.describe_database(settings.effective_database_url)
        cache = "Redis" if settings.redis_url else "embedded Redis (fakeredis on loopback)"
        print(f"Saga API on http://{HOST}:{port}  (local AWS endpoint {engine.endpoint_url}; {data}; {cache})")
        print(f"payment provider at {settings.payment_provider_url} (PAYMENT_PROVIDER_URL, else PROVIDER_PORT)")
        timeouts = f"{settings.local_lambda_timeout:g} s" if settings.local_lambda_timeout else "as in template.yaml"
        print(
            f"faults {'accepted' if settings.allow_faults else 'refused'} (SAGA_ALLOW_FAULTS); each step runs in a "
            f"worker process, function timeouts {timeouts} (LOCAL_LAMBDA_TIMEOUT); Ctrl-C stops."
        )
        sys.stdout.flush()
        stopping = threading.Event()
        worker = threading.Thread(target=_work_bulk_retries, args=(stopping,), name="bulk-retries", daemon=True)
        worker.start()
        try:
            server.server.serve_forever()
        except KeyboardInterrupt:
            print("stopping")
        finally:
            stopping.set()
            server.server.server_close()
    return 0


def _work_bulk_retries(stopping: threading.Event) -> None:
    """The bulk retries' worker, as the deployed function runs it, until the server stops."""
    while not stopping.wait(BULK_RETRY_POLL_SECONDS):
        try:
            taken = bulk_retry.work(boto3_step_functions())
        except Exception:
            logging.getLogger(__name__).exception("the bulk retries' worker failed; it tries again")
            continue
        if taken:
            print(f"bulk retry: took up {taken} saga(s)", flush=True)


def _port(name: str, default: str) -> int:
    value = os.environ.get(name) or default
    if not value.isdigit() or int(value) > 65535:
        raise preflight.SetupError(f"{name}={value} is not a port number (0-65535)")
    return int(value)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(preflight.run("make run", main))
