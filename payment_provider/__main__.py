"""`python -m payment_provider [--host H] [--port P] ...`: run the provider until SIGTERM or SIGINT.

When it listens it prints one line, `payment provider listening on http://HOST:PORT`, with the port it bound
(useful with `--port 0`). A port in use, or a bad setting, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import signal
import sys
import threading
from types import FrameType

from payment_provider import config
from payment_provider.api import ProviderApi
from payment_provider.chaos import Chaos
from payment_provider.config import ProviderSettings, SettingsError
from payment_provider.http_server import ProviderHTTPServer
from payment_provider.idempotency import IdempotencyKeys
from payment_provider.ledger import Ledger
from payment_provider.parent_death import die_with_parent
from payment_provider.store import open_ledger_database

EXIT_BAD_SETTING = 2
logger = logging.getLogger("payment_provider")


def main(argv: list[str] | None = None) -> int:
    """Run the provider; the exit status is 0 after a clean stop."""
    if os.environ.get(config.PARENT_PID):
        die_with_parent(int(os.environ[config.PARENT_PID]))
    try:
        settings = _settings(argv)
    except SettingsError as error:
        return _refuse(str(error))
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s payment_provider %(levelname)s %(message)s"
    )
    try:
        engine = open_ledger_database(settings.database_url)
    except Exception as error:
        reason = (str(error).splitlines() or [""])[0][:200]
        print(f"payment provider: cannot open its ledger database: {type(error).__name__}: {reason}", file=sys.stderr)
        return 1
    chaos = Chaos(
        settings.fault_rate, settings.lost_rate, settings.latency_ms, settings.seed, settings.slow_capture_rate
    )
    api = ProviderApi(
        engine,
        Ledger(settings.refund_settle_seconds, listing_lag_seconds=settings.listing_lag_seconds),
        IdempotencyKeys(engine, settings.key_ttl_seconds),
        chaos,
        settings.slow_capture_seconds,
    )
    try:
        server = ProviderHTTPServer(
            (settings.host, settings.port), api, settings.api_key, chaos, settings.lost_response_hold_seconds
        )
    except OSError as error:
        engine.dispose()
        return _refuse(_cannot_listen(settings, error))

    def stop(_signal: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    logger.info("ledger database: %s", engine.url.render_as_string(hide_password=True))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"payment provider listening on http://{settings.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.dispose()
    logger.info("stopped")
    return 0


def _settings(argv: list[str] | None) -> ProviderSettings:
    parser = argparse.ArgumentParser(prog="python -m payment_provider", description=__doc__)
    parser.add_argument("--host", help=f"interface to listen on (${config.HOST}, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"0 picks a free port (${config.PORT}, default {config.DEFAULT_PORT})")
    parser.add_argument("--database-url", help=f"${config.DATABASE_URL}; default the SQLite file .local/")
    parser.add_argument("--fault-rate", type=float, help=f"fraction of POSTs answered 503 (${config.FAULT_RATE})")
    parser.add_argument("--lost-rate", type=float, help=f"fraction of POSTs whose answer is lost (${config.LOST_RATE})")
    parser.add_argument("--latency-ms", type=float, help=f"latency added to every request (${config.LATENCY_MS})")
    parser.add_argument(
        "--listing-lag-seconds",
        type=float,
        help=f"how long a charge takes to show in GET /v1/charges?saga_id= (${config.LISTING_LAG_SECONDS})",
    )
    parser.add_argument(
        "--slow-capture-rate", type=float, help=f"fraction of charges that commit late (${config.SLOW_CAPTURE_RATE})"
    )
    parser.add_argument(
        "--slow-capture-seconds", type=float, help=f"how late a slow charge commits (${config.SLOW_CAPTURE_SECONDS})"
    )
    parser.add_argument(
        "--key-ttl-seconds", type=float, help=f"how long an Idempotency-Key is remembered (${config.KEY_TTL_SECONDS})"
    )
    parser.add_argument("--seed", type=int, help=f"seed of the chaos draws (${config.SEED})")
    arguments = parser.parse_args(argv)
    overrides = {name: value for name, value in vars(arguments).items() if value is not None}
    settings = dataclasses.replace(ProviderSettings.from_env(os.environ), **overrides)
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"--port {settings.port} must be between 0 and 65535")
    config.check_rate("--fault-rate", settings.fault_rate)
    config.check_rate("--lost-rate", settings.lost_rate)
    config.check_rate("--slow-capture-rate", settings.slow_capture_rate)
    return settings


def _cannot_listen(settings: ProviderSettings, error: OSError) -> str:
    where = f"{settings.host}:{settings.port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: port {settings.port} is already in use; set {config.PORT}=<a free port>"
    return f"cannot listen on {where}: {error.strerror or error}"


def _refuse(message: str) -> int:
    print(f"payment provider: {message}", file=sys.stderr)
    return EXIT_BAD_SETTING


if __name__ == "__main__":
    sys.exit(main())
