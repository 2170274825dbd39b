"""The worker I/O loop (wscore.ioloop) with in-process actors, over real sockets
on 127.0.0.1: ports read and written by the loop, owned by one actor each,
closed when the owner closes them or dies (even killed: no terminate)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from supervisors import SupervisedActor
from supervisors.messages import Init
from supervisors import log as slog
from wscore.ioloop import PortData, WorkerLoop


class Owner(SupervisedActor):
    """Upper-cases what it reads; "big" writes 8 MiB; closes on EOF."""

    def handle_message(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "own":
            self.port = msg[1]
        elif isinstance(msg, PortData):
            if not msg.data:
                msg.port.close()
                self.stop("normal")
            elif msg.data.strip() == b"big":
                msg.port.write(b"x" * (8 << 20))
            else:
                msg.port.write(msg.data.upper())

    def terminate(self, reason):
        TERMINATED.append(self.actor_id)


TERMINATED: list = []


@pytest.fixture
def loop(tmp_path):
    TERMINATED.clear()
    lp = WorkerLoop()
    owners: list = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    lp.port_number = srv.getsockname()[1]

    def on_accept(client, peer):
        addr = lp.system.createActor(Owner)
        lp.system.tell(addr, Init("owner", (), {}, slog.current(), "test", 0))
        port = lp.open_port(client, addr)
        lp.system.tell(addr, ("own", port))
        owners.append(addr)

    lp.listen(srv, on_accept)
    lp.owners = owners
    lp.start()
    yield lp
    lp.stop()
    lp.thread.join(5)
    assert not lp.thread.is_alive()


def connect(lp):
    c = socket.create_connection(("127.0.0.1", lp.port_number), timeout=5)
    return c


def recv_exactly(c, n):
    buf = b""
    while len(buf) < n:
        part = c.recv(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def test_many_connections_in_one_thread(loop):
    clients = [connect(loop) for _ in range(50)]
    for i, c in enumerate(clients):
        c.sendall(b"hello %d" % i)
    for i, c in enumerate(clients):
        assert recv_exactly(c, len(b"hello %d" % i)) == b"HELLO %d" % i
    assert threading.active_count() < 10          # no thread per connection
    for c in clients:
        c.close()
    until(lambda: len(TERMINATED) == 50 and not loop.ports)


def test_writes_never_block_the_loop(loop):
    slow, fast = connect(loop), connect(loop)
    slow.sendall(b"big")                           # 8 MiB to a client that is not reading
    until(lambda: any(p.pending_output for p in list(loop.ports.values())))
    fast.sendall(b"still served")
    assert recv_exactly(fast, 12) == b"STILL SERVED"
    assert recv_exactly(slow, 8 << 20) == b"x" * (8 << 20)
    slow.close()
    fast.close()


def test_a_killed_owner_loses_its_port_without_terminate(loop):
    c = connect(loop)
    c.sendall(b"a")
    assert recv_exactly(c, 1) == b"A"
    [owner] = loop.owners
    done = threading.Event()
    loop.post(lambda: (loop.tier.kill_address(owner), done.set()))
    assert done.wait(5)
    c.settimeout(5)
    assert c.recv(10) == b""                       # the loop closed the socket: EOF
    assert TERMINATED == []                        # killed: no terminate ran
    until(lambda: not loop.ports)
    c.close()


def test_registered_names_go_with_their_actor_however_it_ends(loop):
    """Erlang's register/whereis: a name finds its actor until it unregisters
    or dies — stopped or killed (the death hook drops it)."""
    clients = [connect(loop) for _ in range(2)]
    for c in clients:
        c.sendall(b"x")
        assert recv_exactly(c, 1) == b"X"
    a, b = loop.owners
    done = threading.Event()
    loop.post(lambda: (loop.register("a", a), loop.register("b", b), done.set()))
    assert done.wait(5)
    assert loop.whereis("a") == a and loop.whereis("b") == b
    killed = threading.Event()
    loop.post(lambda: (loop.tier.kill_address(a), killed.set()))
    assert killed.wait(5)
    until(lambda: loop.whereis("a") is None)          # killed: no terminate, the name is gone
    assert loop.whereis("b") == b
    from thespian.actors import ActorExitRequest
    ended = threading.Event()                         # b ended by its "supervisor" (with terminate)
    loop.post(lambda: (loop.system.tell(b, ActorExitRequest()), ended.set()))
    assert ended.wait(5)
    until(lambda: loop.whereis("b") is None)
    assert len(TERMINATED) == 1
    for c in clients:
        c.close()
