"""A SnapStart version inside a worker: the initialised process that every execution environment resumes from.

Lambda initialises a SnapStart version once (the handler imported, then the before-snapshot hooks), snapshots the
process, and resumes each new execution environment from that snapshot, running the after-restore hooks before
its first event (https://docs.aws.amazon.com/lambda/latest/dg/snapstart.html). Here the snapshot is a process
kept at that point, and a restore is a fork of it: the child starts with the snapshot's memory, as a restored
environment does, and goes on as an ordinary worker.

What a snapshot cannot carry is cut as a restore cuts it: a network connection still open when the snapshot was
taken is dead in every environment resumed from it (reads see its end, writes fail).

Standard library only, as the rest of the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import stat
import sys
from collections.abc import Callable
from typing import Any

from local_lambda.framing import Frame, FrameBuffer, Kind, encode

_PR_SET_PDEATHSIG = 1
_MAX_FDS = 2
_READ_SIZE = 1 << 16


def run_hooks(kind: str) -> None:
    """Run the hooks registered in ``snapshot_restore_py`` (bundled with Lambda's managed runtimes), as Lambda
    does: before-snapshot hooks in reverse order of registration, after-restore hooks in order."""
    try:
        import snapshot_restore_py as hooks  # the function's interpreter may not have it
    except ImportError:
        return
    if kind == "before_snapshot":
        registered = list(reversed(hooks.get_before_snapshot()))
    else:
        registered = list(hooks.get_after_restore())
    for func, args, kwargs in registered:
        func(*args, **kwargs)


def serve_restores(channel: socket.socket, ready: bytes, serve_environment: Callable[[socket.socket], None]) -> None:
    """Be the snapshot: say ``ready``, then fork one environment per RESTORE frame and report each one's exit, until
    the runtime closes the channel. ``serve_environment`` runs in each child with its own protocol socket."""
    _cut_connections(keep={channel.fileno()})
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    frames = FrameBuffer()
    fds: list[int] = []
    channel.sendall(ready)
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, _READ_SIZE)
                _report_exits(channel)
                continue
            data, received, _, _ = socket.recv_fds(channel, _READ_SIZE, _MAX_FDS)
            if not data:
                return
            frames.feed(data)
            fds += received
            while (frame := frames.next_frame()) is not None:
                if frame.kind is Kind.RESTORE:
                    protocol_fd, log_fd, fds = fds[0], fds[1], fds[2:]
                    pid = _fork(frame, protocol_fd, log_fd, [channel.fileno(), wake_read, wake_write], selector)
                    if pid == 0:
                        serve_environment(socket.socket(fileno=protocol_fd))
                        os._exit(0)
                    os.close(protocol_fd)
                    os.close(log_fd)
                    channel.sendall(encode(Kind.RESTORED, {"pid": pid}))


def _fork(frame: Frame, protocol_fd: int, log_fd: int, snapshot_fds: list[int], selector: Any) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid != 0:
        return pid
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    selector.close()
    for fd in snapshot_fds:
        os.close(fd)
    os.setsid()
    _die_with_parent()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.environ.clear()
    os.environ.update(frame.meta["environment"])
    return 0


def _report_exits(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel.sendall(encode(Kind.EXITED, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}))


def _cut_connections(keep: set[int]) -> None:
    """Shut down every socket the init left open but ``keep``: in a restored environment it would be dead."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                with socket.socket(fileno=os.dup(fd)) as duplicate:
                    duplicate.shutdown(socket.SHUT_RDWR)


def _die_with_parent() -> None:
    """SIGKILL this environment when the snapshot's process dies, as the worker's own dies with the runtime."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
