"""The protocol between the runtime and a worker: length-prefixed frames on a dedicated socket.

A frame is a 9-byte header (kind, metadata length, body length; big-endian), then the metadata (a small JSON
object) and the body (raw bytes: an event or a result, never re-encoded). The handler's stdout and stderr never
touch this socket, so nothing the handler prints can corrupt an answer.
"""

from __future__ import annotations

import json
import socket
import struct
from enum import IntEnum
from typing import Any

_HEADER = struct.Struct(">BII")


class Kind(IntEnum):
    """What a frame says."""

    INIT = 1
    """runtime -> worker: the handler to load, the code paths and the environment's variable names (metadata)."""
    INIT_DONE = 2
    """worker -> runtime: the handler is loaded (metadata: ``max_rss_kb``)."""
    INIT_FAILED = 3
    """worker -> runtime: loading failed (body: the error object); the worker exits next."""
    EVENT = 4
    """runtime -> worker: one invocation (metadata: request id, deadline, ARN; body: the event's JSON)."""
    RESULT = 5
    """worker -> runtime: the handler's answer (body) and the measurements (metadata)."""
    FUNCTION_ERROR = 6
    """worker -> runtime: the invocation failed (body: the error object) and the measurements (metadata)."""
    RESTORE = 7
    """runtime -> snapshot: resume one more execution environment (the new environment's protocol socket and log
    pipe ride along as file descriptors; metadata: its environment's variables)."""
    RESTORED = 8
    """snapshot -> runtime: the environment is resumed as this process (metadata: ``pid``)."""
    EXITED = 9
    """snapshot -> runtime: an environment resumed from it has exited (metadata: ``pid``, ``returncode``)."""
    RESTORE_DONE = 10
    """resumed environment -> runtime: the after-restore hooks ran (metadata: measurements); events may follow."""


class Frame:
    """One decoded frame."""

    __slots__ = ("body", "kind", "meta")

    def __init__(self, kind: Kind, meta: dict[str, Any], body: bytes) -> None:
        self.kind = kind
        self.meta = meta
        self.body = body


def encode(kind: Kind, meta: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame, ready for ``sendall``."""
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    return _HEADER.pack(kind, len(meta_bytes), len(body)) + meta_bytes + body


class FrameBuffer:
    """Bytes received so far, cut into frames as they complete (for a reader that must not block)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append bytes read from the socket."""
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The first complete frame, removed from the buffer; None until one is complete."""
        if len(self._buffer) < _HEADER.size:
            return None
        kind, meta_length, body_length = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + meta_length + body_length
        if len(self._buffer) < end:
            return None
        meta_end = _HEADER.size + meta_length
        meta = json.loads(bytes(self._buffer[_HEADER.size : meta_end])) if meta_length else {}
        body = bytes(self._buffer[meta_end:end])
        del self._buffer[:end]
        return Frame(Kind(kind), meta, body)


def read_frame(sock: socket.socket) -> Frame | None:
    """Block until one whole frame has arrived; None if the other end closed the socket first."""
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    kind, meta_length, body_length = _HEADER.unpack(header)
    rest = _read_exactly(sock, meta_length + body_length)
    if rest is None:
        return None
    meta = json.loads(rest[:meta_length]) if meta_length else {}
    return Frame(Kind(kind), meta, rest[meta_length:])


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    if size == 0:
        return b""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)
