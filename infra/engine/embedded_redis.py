"""The embedded default's Redis: fakeredis served over TCP on loopback, for as long as the local tools run.

A stand-in in one process's memory could not be shared: the API server, the local engine and (in worker
processes) the step functions all reach it as they would reach a real Redis, through REDIS_URL.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis._clients._tcp_server import TCPFakeRequestHandler

from infra.engine.ports import NagleOffServer

PUSH_POLL_SECONDS = 0.01
"""How soon a subscribed connection's pushed message (a saga's status move) is written out: fakeredis's own poll."""
IDLE_WAIT_SECONDS = 1.0
"""How long an unsubscribed connection sleeps between looks at the server's shutdown, unless its client writes."""


class IdleConnectionsSleep(TCPFakeRequestHandler):
    """fakeredis wakes every idle connection each 10 ms to look for replies pushed to it, which only a subscribed
    connection gets. With a pooled connection per warm function, those wake-ups were most of the CPU of the process
    serving them (measured: 18 % of a core for 30 idle connections), taken from the engine's threads beside them.
    A connection without a subscription sleeps in select() until its client writes."""

    def handle(self) -> None:
        while not self.server._shutdown_event.is_set():
            try:
                if self.current_client.can_read():
                    self.writer.dump(self.current_client.read_response())
                    continue
                data = self.rfile.readline()
                if data == b"":
                    # Non-blocking: nothing yet, or the peer closed. Readable yet empty after select() is the close.
                    subscribed = getattr(self.current_client.get_socket(), "_pubsub", 1) > 0
                    wait = PUSH_POLL_SECONDS if subscribed else IDLE_WAIT_SECONDS
                    readable, _, _ = select.select([self.connection], [], [], wait)
                    if not readable:
                        continue
                    data = self.rfile.readline()
                    if data == b"":
                        break
                self.current_client.get_socket().sendall(data)
            except ConnectionError:
                break
            except Exception as error:  # as fakeredis does: the client is told, and the connection ends
                self.writer.dump(error)
                break


class FakeRedisServer(NagleOffServer, TcpFakeServer):
    """Redis turns Nagle's algorithm off on every client's socket (`TCP_NODELAY`); fakeredis does not, and writes
    each reply of a pipeline on its own, so the second waited for the client's delayed ACK: 40 ms per MULTI/EXEC."""

    def __init__(self, server_address: tuple[str, int], **kwargs: Any) -> None:
        super().__init__(server_address, **kwargs)
        self.RequestHandlerClass = IdleConnectionsSleep


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
