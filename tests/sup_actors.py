"""Actors used by the supervisors tests."""

from __future__ import annotations

import os
import time

from supervisors import NoticeReply, SupervisedActor, Supervisor, shutdown_with


class Worker(SupervisedActor):
    """Answers commands; its state (a counter) shows whether it is fresh."""

    def init(self, name: str = "w", fail_init: bool = False, stop_delay: float = 0.0,
             init_delay: float = 0.0, fail_if_exists: str | None = None) -> None:
        if init_delay:
            time.sleep(init_delay)
        if fail_init or (fail_if_exists and os.path.exists(fail_if_exists)):
            raise RuntimeError(f"{name} refuses to start")
        self.name = name
        self.count = 0
        self.stop_delay = stop_delay

    def handle_message(self, msg, sender):
        if msg == "pid":
            self.send(sender, os.getpid())
        elif msg == "incr":
            self.count += 1
            self.send(sender, self.count)
        elif msg == "crash":
            raise ValueError(f"{self.name} crashed on purpose")
        elif msg == "normal":
            self.stop("normal")
        elif msg == "shutdown":
            self.stop("shutdown")
        elif msg == "shutdown_term":
            self.stop(shutdown_with("bye"))
        elif msg == "other":
            self.stop("some_other_reason")
        elif msg == "hang":
            time.sleep(3600)
        elif isinstance(msg, tuple) and msg[:1] == ("note",):
            self.asker = sender
            self.notify_supervisor(msg[1])
        elif isinstance(msg, NoticeReply):
            self.send(self.asker, ("answered", msg.payload, sender == self.supervisor))

    def terminate(self, reason):
        if self.stop_delay:
            time.sleep(self.stop_delay)


class NotingSupervisor(Supervisor):
    """Answers its children's notices with what it took note of (ignores "quiet")."""

    def handle_child_notice(self, spec, pid, payload):
        if payload == "quiet":
            return None
        return ("noted", spec.id, pid, payload)
