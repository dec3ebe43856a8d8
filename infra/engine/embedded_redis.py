"""The embedded default's Redis: fakeredis served over TCP on loopback, for as long as the local tools run.

A stand-in in one process's memory could not be shared: the API server, the local engine and (in worker
processes) the step functions all reach it as they would reach a real Redis, through REDIS_URL.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fakeredis import TcpFakeServer


class FakeRedisServer(TcpFakeServer):
    """Redis turns Nagle's algorithm off on every client's socket (`TCP_NODELAY`); fakeredis does not, and writes
    each reply of a pipeline on its own, so the second waited for the client's delayed ACK: 40 ms per MULTI/EXEC."""

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


@contextmanager
def embedded_redis() -> Iterator[str]:
    """Serve an empty fakeredis on a free 127.0.0.1 port; its URL. Stops when the block ends."""
    server = FakeRedisServer(("127.0.0.1", 0), server_type="redis")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True)
    thread.start()
    host, port = str(server.server_address[0]), int(server.server_address[1])
    try:
        yield f"redis://{host}:{port}/0"
    finally:
        server.shutdown()
        server.server_close()
