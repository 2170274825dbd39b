"""`wsup serve` started as a real subprocess by a test, and ended by its pid."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from logutil import Log, wait_until

from supervisors import _platform

HERE = os.path.dirname(os.path.abspath(__file__))
WSUP = [sys.executable, "-m", "wsup.cli"]


class ServerProcess:
    """``wsup serve --port 0`` with a JSON-lines log in *tmp_path*; ready when it printed its
    URL. *stderr* is piped by default (read on a failed start); pass None to inherit it when
    the server may write more than a pipe holds and nobody reads it."""

    def __init__(self, tmp_path, *args, stderr=subprocess.PIPE, log_name="serve.jsonl", cwd=None):
        self.log_path = tmp_path / log_name
        env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(WSUP + ["serve", "--port", "0", "--log-file", str(self.log_path), *args],
                                     stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"listening on (ws://127\.0\.0\.1:(\d+))\n", line)
        if not m:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait()
            raise AssertionError(f"no readiness line: {line!r} {err}")
        self.url, self.port = m.group(1), int(m.group(2))
        self.log = Log(self.log_path)
        self.pgid = self._find_pgid()

    def _find_pgid(self):
        """The actor system's process group: led by the admin, our child."""
        return wait_until(lambda: next((p for p in _platform.children_of(self.proc.pid)
                                        if _platform.process_group_of(p) == p), None))

    def processes(self):
        return _platform.live_group_members(self.pgid)

    def close(self):
        """SIGKILL the main process if it still runs (its actors die with it: PDEATHSIG)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()
