from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from logutil import Log, wait_until  # noqa: E402

from supervisors import LogConfig, Runtime  # noqa: E402
from supervisors import _platform  # noqa: E402


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "log.jsonl"


@pytest.fixture
def log(log_path):
    return Log(log_path)


@pytest.fixture
def runtime(log_path):
    """A private actor system; on teardown the tree is stopped, and the test
    fails if any process of the system is left or a log line is torn."""
    rt = Runtime(log=LogConfig(path=str(log_path), level="debug"))
    pgid = rt.pgid
    assert pgid, "the admin process group was not found"
    try:
        yield rt
    finally:
        rt.shutdown(stop_timeout=30)
        left = _platform.live_group_members(pgid)
        assert not left, f"processes left behind: {left}"
        Log(log_path).records(strict=True)


@pytest.fixture
def make_server(tmp_path):
    """Start in-process servers (their actor systems are private); stopped,
    and checked for leftover processes, at teardown."""
    from wscore.config import ServerConfig
    from wsup.server import Server

    servers = []

    def make(**overrides):
        overrides.setdefault("port", 0)
        overrides.setdefault("log", LogConfig(path=str(tmp_path / f"server{len(servers)}.jsonl"),
                                              level="debug"))
        server = Server(ServerConfig(**overrides))
        servers.append(server)
        server.start()
        server.log = Log(server.config.log.path)
        server.url = f"ws://127.0.0.1:{server.address[1]}"
        server.port = server.address[1]
        return server

    yield make
    for server in servers:
        if server.runtime is None:
            continue
        pgid = server.runtime.pgid
        if not server.runtime._closed:
            server.stop()
        left = _platform.live_group_members(pgid)
        assert not left, f"processes left behind: {left}"
        server.log.records(strict=True)


@pytest.fixture
def serve(tmp_path):
    """serve(*args, **kw) starts `wsup serve` as a subprocess (tests/serveproc.py); at teardown
    each is SIGKILLed if it still runs, and no process of its group may be left."""
    from serveproc import ServerProcess

    started = []

    def start(*args, **kw):
        sp = ServerProcess(tmp_path, *args, **kw)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.close()
        assert wait_until(lambda: not sp.processes(), timeout=10, message="no process left")


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def inject(tmp_path):
    """inject("point:action[:trigger]", ...) before starting a server: the
    faults reach every actor it forks.  Cleared at teardown."""
    from supervisors import faults

    def configure(*specs):
        faults.configure(list(specs), state_dir=str(tmp_path))

    yield configure
    faults.configure([])
