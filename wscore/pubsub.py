"""Publish/subscribe inside one worker, sans-I/O: who listens to what, and what leaves.

A worker's :class:`PubSub` (``WorkerLoop.pubsub``) holds its local
subscriptions only — the connections of this worker, by their id, and
worker-level listeners (functions) — and nothing about other workers or
nodes.  A publish is delivered here at once (to every subscriber but the one
excluded) and, if it was published here, queued in :attr:`outbox` for the
other workers and nodes; the worker takes the outbox once per turn of its
loop — or at once, through :attr:`hand_over`, when a local fan-out is about
to start, so that the others need not wait for it — and sends it as one
batch per destination, where it is delivered
locally the same way.  So a subscriber is known only where it lives: when its
connection ends (any way: close, crash, in-process kill — the loop's death
hook calls :meth:`drop`; a dead worker takes its table with it) nothing
anywhere still holds it, and nothing is delivered to it or kept for it.

Topics are non-empty ``str`` of at most :data:`MAX_TOPIC` characters;
messages are ``str`` (sent as text) or ``bytes`` (binary).  Anything else is
refused at the call, in the application, with a TypeError or ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

MAX_TOPIC = 256


@dataclass(frozen=True, slots=True)
class Published:
    """What a subscriber's ConnectionActor receives: one instance is shared by
    every subscriber of a worker.  ``publisher``: the connection id that
    published it, or None (code outside a connection)."""
    topic: str
    message: str | bytes
    publisher: str | None = None


def check_topic(topic: Any) -> str:
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, not {type(topic).__name__}")
    if not topic or len(topic) > MAX_TOPIC:
        raise ValueError(f"a topic is 1..{MAX_TOPIC} characters, not {len(topic)}")
    return topic


def check_message(message: Any) -> str | bytes:
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"a published message is str (text) or bytes (binary), not {type(message).__name__}")


class PubSub:
    """``deliver(addresses, published)`` hands one Published to many
    in-process actors (the worker loop's send_many)."""

    def __init__(self, deliver: Callable[[list, Published], None], forwarding: bool = True) -> None:
        self._deliver = deliver
        self.forwarding = forwarding        # False: no other worker or node to tell
        self._topics: dict[str, dict[str, Any]] = {}     # topic -> {subscriber key: address or function}
        self._of: dict[str, set[str]] = {}               # subscriber key -> its topics
        self.outbox: list[tuple[str, str | bytes, str | None]] = []   # published here, for elsewhere
        self.published = 0          # publishes made in this worker
        self.delivered = 0          # deliveries to subscribers of this worker (from anywhere)
        self.listener_failures = 0
        self.on_listener_failure: Callable[[str, BaseException], None] | None = None
        # hand_over(items): the outbox, taken now (before a local fan-out); None: taken once per turn
        self.hand_over: Callable[[list], None] | None = None

    # -- subscriptions --------------------------------------------------------------

    def subscribe(self, topic: str, key: str, target: Any) -> bool:
        """``target`` (an in-process actor address, or a function
        ``fn(topic, message)`` run in the loop) gets what is published to
        ``topic`` until :meth:`unsubscribe` or :meth:`drop` of ``key``.
        False if it was subscribed already."""
        check_topic(topic)
        subs = self._topics.setdefault(topic, {})
        new = key not in subs
        subs[key] = target
        self._of.setdefault(key, set()).add(topic)
        return new

    def unsubscribe(self, topic: str, key: str) -> bool:
        check_topic(topic)
        subs = self._topics.get(topic)
        if subs is None or subs.pop(key, None) is None:
            return False
        if not subs:
            del self._topics[topic]
        topics = self._of.get(key)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._of[key]
        return True

    def drop(self, key: str) -> int:
        """Every subscription of ``key`` (its connection ended); how many."""
        topics = self._of.pop(key, ())
        for topic in topics:
            subs = self._topics.get(topic)
            if subs is not None:
                subs.pop(key, None)
                if not subs:
                    del self._topics[topic]
        return len(topics)

    def topics_of(self, key: str) -> set[str]:
        return set(self._of.get(key, ()))

    def subscribers(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    @property
    def subscriptions(self) -> int:
        return sum(len(s) for s in self._topics.values())

    @property
    def topic_count(self) -> int:
        return len(self._topics)

    # -- publishing -------------------------------------------------------------------

    def publish(self, topic: Any, message: Any, exclude: str | None = None,
                publisher: str | None = None) -> int:
        """Publish here: delivered to this worker's subscribers (but ``exclude``)
        now, and queued for the other workers and nodes.  The number of local
        deliveries."""
        check_topic(topic)
        message = check_message(message)
        self.published += 1
        if self.forwarding:
            self.outbox.append((topic, message, publisher))
            if self.hand_over is not None and topic in self._topics:
                # a local fan-out follows: what is queued leaves first, so that the other
                # workers deliver side by side with this one, not after it
                self.hand_over(self.take_outbox())
        return self.arrived(topic, message, publisher, exclude)

    def arrived(self, topic: str, message: str | bytes, publisher: str | None = None,
                exclude: str | None = None) -> int:
        """A publish to deliver to this worker's subscribers (made here, or
        in a batch from elsewhere)."""
        subs = self._topics.get(topic)
        if not subs:
            return 0
        published = Published(topic, message, publisher)
        actors = []
        functions = []
        for key, target in subs.items():
            if key == exclude:
                continue
            (functions if callable(target) else actors).append(target)
        if actors:
            self._deliver(actors, published)
        for fn in functions:
            try:
                fn(topic, message)
            except Exception as exc:     # a listener's bug is its own, not the worker's
                self.listener_failures += 1
                if self.on_listener_failure is not None:
                    self.on_listener_failure(topic, exc)
        n = len(actors) + len(functions)
        self.delivered += n
        return n

    def arrived_batch(self, items: list) -> int:
        n = 0
        for topic, message, publisher in items:
            n += self.arrived(topic, message, publisher)
        return n

    def take_outbox(self) -> list:
        out, self.outbox = self.outbox, []
        return out
