"""Loopback ports for the servers the tools start, and their sockets."""

from __future__ import annotations

import socket
import socketserver
from typing import Any


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NagleOffServer(socketserver.TCPServer):
    """Nagle's algorithm off on each accepted connection, as Redis, gunicorn and asyncio's servers set it: a server
    that writes one answer in two sends otherwise holds the second until the client's delayed ACK, 40 ms."""

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address
