from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from logutil import Log  # noqa: E402

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
