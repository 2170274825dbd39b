"""A program whose root supervisor exceeds its restart intensity.

Prints its actor system's process group, then its child crashes in a loop
(the child crashes right after it starts) until the root gives up; the
program must then exit with status 1, leaving no process behind."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sup_actors import Worker  # noqa: E402

from supervisors import ChildSpec, LogConfig, SupFlags, supervisor_spec  # noqa: E402
from supervisors.runtime import run  # noqa: E402


class CrashAtStart(Worker):
    def init(self, *args, **kwargs):
        super().init(*args, **kwargs)
        self.send(self.myAddress, "crash")


def main() -> int:
    root = supervisor_spec("root", SupFlags(intensity=2, period=10),
                           [ChildSpec("crasher", (CrashAtStart, ("crasher",)))])
    return run(root, log=LogConfig(path=sys.argv[1]),
               on_started=lambda rt: print(f"pgid {rt.pgid}", flush=True))


if __name__ == "__main__":
    sys.exit(main())
