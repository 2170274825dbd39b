"""Handing an accepted socket to the one process that will own it.

Thespian's multiproc bases fork every actor, and a forked child inherits every
descriptor of its parent: a client socket open in a process that creates
actors would leak into all of them and keep the TCP connection alive after its
owner closed it.  So the listener (which never forks) keeps each accepted
socket only until the connection's actor, already running in its own process,
collects it over an abstract AF_UNIX socket with SCM_RIGHTS; the listener then
closes its copy.  Works with fork and spawn start methods alike.

The channel only serves processes of the same user (SO_PEERCRED), and a
connection id is 12 random hex digits.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Callable

HANDOFF_IO_TIMEOUT = 10.0  # a listener busy accepting a burst may answer late


def _recv_exactly(chan: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = chan.recv(n - len(buf))
        if not part:
            raise ConnectionError("handoff channel closed early")
        buf += part
    return buf


def collect_socket(handoff_name: str, connection_id: str,
                   timeout: float = HANDOFF_IO_TIMEOUT) -> socket.socket:
    """In the connection's process: fetch its client socket from the listener."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as chan:
        chan.settimeout(timeout)
        chan.connect("\0" + handoff_name)
        ident = connection_id.encode("ascii")
        chan.sendall(struct.pack("!H", len(ident)) + ident)
        msg, fds, _flags, _addr = socket.recv_fds(chan, 16, 1)
        if msg != b"ok" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ConnectionError(f"the listener has no socket for connection {connection_id}")
        return socket.socket(fileno=fds[0])


def give_socket(chan: socket.socket, take: Callable[[str], socket.socket | None]) -> None:
    """In the listener: answer one request on an accepted handoff channel.
    ``take(connection_id)`` removes and returns the pending socket (or None);
    it is sent, then closed here."""
    pid, uid, _gid = struct.unpack("3i", chan.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    if uid != os.getuid():
        raise PermissionError(f"handoff request from uid {uid} (pid {pid}) refused")
    (n,) = struct.unpack("!H", _recv_exactly(chan, 2))
    sock = take(_recv_exactly(chan, n).decode("ascii"))
    if sock is None:
        chan.sendall(b"no")
        return
    try:
        socket.send_fds(chan, [b"ok"], [sock.fileno()])
    finally:
        sock.close()  # from now on only the collecting process holds it
