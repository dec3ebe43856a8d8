"""`make run`'s HTTP server: its sockets, as a production server sets them."""

from __future__ import annotations

import socket

from chalice.local import ChaliceRequestHandler

from infra.engine.local_server import ApiHTTPServer


def test_each_connection_has_nagles_algorithm_off_and_the_backlog_holds_a_burst() -> None:
    server = ApiHTTPServer(("127.0.0.1", 0), ChaliceRequestHandler)
    try:
        with socket.create_connection(server.server_address[:2]):
            accepted, _ = server.get_request()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert server.request_queue_size == 128
    finally:
        server.server_close()
