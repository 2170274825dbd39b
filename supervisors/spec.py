"""Child specifications and supervisor flags: OTP's data, as frozen dataclasses.

A child spec says how to start a child, when to restart it and how to stop it;
it is plain data (picklable), so a supervisor can be described before anything
runs, exactly like OTP's ``#{id, start, restart, shutdown, type, significant}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

# restart types
PERMANENT = "permanent"
TRANSIENT = "transient"
TEMPORARY = "temporary"
RESTART_TYPES = (PERMANENT, TRANSIENT, TEMPORARY)

# shutdown values besides a timeout in milliseconds
BRUTAL_KILL = "brutal_kill"
INFINITY = "infinity"

# child types
WORKER = "worker"
SUPERVISOR = "supervisor"

# strategies
ONE_FOR_ONE = "one_for_one"
ONE_FOR_ALL = "one_for_all"
REST_FOR_ONE = "rest_for_one"
SIMPLE_ONE_FOR_ONE = "simple_one_for_one"
STRATEGIES = (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE)

# auto_shutdown
NEVER = "never"
ANY_SIGNIFICANT = "any_significant"
ALL_SIGNIFICANT = "all_significant"
AUTO_SHUTDOWNS = (NEVER, ANY_SIGNIFICANT, ALL_SIGNIFICANT)

DEFAULT_WORKER_SHUTDOWN_MS = 5000


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


_REPRS: dict[int, tuple[Any, str]] = {}


def _repr(value: Any) -> str:
    """repr() for a report; a frozen dataclass (a server's config, handed to
    every connection's actors) is repr'd once, not at every start."""
    params = getattr(type(value), "__dataclass_params__", None)
    if params is None or not params.frozen:
        return repr(value)
    hit = _REPRS.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    text = repr(value)
    if len(_REPRS) > 256:
        _REPRS.clear()
    _REPRS[id(value)] = (value, text)
    return text


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child.

    ``start`` is ``(ActorClass, args)`` or ``(ActorClass, args, kwargs)``: the
    child is created as a Thespian actor of that class (a subclass of
    :class:`supervisors.SupervisedActor`) and its ``init(*args, **kwargs)`` is
    called, like OTP's ``{M, F, A}``.

    ``shutdown`` is :data:`BRUTAL_KILL`, a timeout in milliseconds or
    :data:`INFINITY`; the default is 5000 for a worker and infinity for a
    supervisor, as in OTP.

    ``start_timeout`` (seconds) is not in OTP (where start_link waits
    forever): a child whose ``init`` does not return in time is killed and the
    start counts as failed with reason ``"timeout"``.

    ``log_context`` (not in OTP) is bound into every log record the child
    writes and every report its supervisor writes about it (e.g. a
    ``connection_id``).
    """

    id: Hashable
    start: tuple
    restart: str = PERMANENT
    shutdown: int | str | None = None
    type: str = WORKER
    significant: bool = False
    start_timeout: float = 10.0
    log_context: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.shutdown is None:
            object.__setattr__(
                self, "shutdown",
                INFINITY if self.type == SUPERVISOR else DEFAULT_WORKER_SHUTDOWN_MS)

    @property
    def actor_class(self) -> type:
        return self.start[0]

    @property
    def args(self) -> tuple:
        return tuple(self.start[1]) if len(self.start) > 1 else ()

    @property
    def kwargs(self) -> dict:
        return dict(self.start[2]) if len(self.start) > 2 and self.start[2] else {}

    def with_extra_args(self, extra: tuple) -> "ChildSpec":
        """OTP simple_one_for_one: ``apply(M, F, A ++ ExtraArgs)``."""
        # dataclasses.replace re-runs the field machinery (a few us at every dynamic start);
        # a copy with one field changed is the same spec
        spec = object.__new__(ChildSpec)
        spec.__dict__.update(self.__dict__)
        object.__setattr__(spec, "start", (self.actor_class, self.args + tuple(extra), self.kwargs))
        return spec

    def check(self) -> None:
        """Raise ValueError for an invalid spec (OTP: check_childspec)."""
        if not isinstance(self.start, tuple) or not 1 <= len(self.start) <= 3:
            raise ValueError(f"invalid start {self.start!r}: expected (ActorClass, args[, kwargs])")
        if not isinstance(self.start[0], type):
            raise ValueError(f"invalid start {self.start!r}: not a class")
        if len(self.start) > 1 and not isinstance(self.start[1], (tuple, list)):
            raise ValueError(f"invalid start args {self.start[1]!r}")
        if len(self.start) > 2 and not isinstance(self.start[2], dict):
            raise ValueError(f"invalid start kwargs {self.start[2]!r}")
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"invalid restart type {self.restart!r}")
        if self.type not in (WORKER, SUPERVISOR):
            raise ValueError(f"invalid child type {self.type!r}")
        sd = self.shutdown
        if not (sd in (BRUTAL_KILL, INFINITY)
                or (isinstance(sd, int) and not isinstance(sd, bool) and sd >= 0)):
            raise ValueError(f"invalid shutdown {sd!r}")
        if not isinstance(self.significant, bool):
            raise ValueError(f"invalid significant {self.significant!r}")
        if self.significant and self.restart == PERMANENT:
            raise ValueError("a permanent child cannot be significant")
        try:
            hash(self.id)
        except TypeError:
            raise ValueError(f"child id {self.id!r} is not hashable") from None

    def start_repr(self) -> str:
        args = ", ".join([_repr(a) for a in self.args]
                         + [f"{k}={_repr(v)}" for k, v in self.kwargs.items()])
        if len(args) > 200:
            args = args[:200] + "..."
        return f"{_qualname(self.actor_class)}({args})"

    def offender(self, pid: int | None) -> dict:
        """The OTP report's ``offender`` list, as a dict."""
        return {
            "pid": pid,
            "id": self.id if isinstance(self.id, (str, int)) else repr(self.id),
            "start": self.start_repr(),
            "restart_type": self.restart,
            "significant": self.significant,
            "shutdown": self.shutdown,
            "child_type": self.type,
        }


@dataclass(frozen=True)
class SupFlags:
    """Supervisor flags (OTP: ``#{strategy, intensity, period, auto_shutdown}``).

    ``period`` is in seconds (a float; OTP counts whole seconds).
    ``max_children`` applies to :data:`SIMPLE_ONE_FOR_ONE` only (OTP
    DynamicSupervisor): ``None`` means unlimited.
    ``name`` appears in every report as ``supervisor``.
    ``liveness_poll`` (seconds, not in OTP): how often the children's
    processes are checked when nothing suggests one died (Thespian loses
    some death notices when many children die at once).
    """

    strategy: str = ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: str = NEVER
    max_children: int | None = None
    name: str | None = None
    liveness_poll: float = 2.0
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"invalid strategy {self.strategy!r}")
        if not isinstance(self.intensity, int) or self.intensity < 0:
            raise ValueError(f"invalid intensity {self.intensity!r}")
        if not isinstance(self.period, (int, float)) or self.period <= 0:
            raise ValueError(f"invalid period {self.period!r}")
        if self.auto_shutdown not in AUTO_SHUTDOWNS:
            raise ValueError(f"invalid auto_shutdown {self.auto_shutdown!r}")
        if self.max_children is not None and (
                not isinstance(self.max_children, int) or self.max_children < 0):
            raise ValueError(f"invalid max_children {self.max_children!r}")
        if self.max_children is not None and self.strategy != SIMPLE_ONE_FOR_ONE:
            raise ValueError("max_children is for simple_one_for_one supervisors")
        if not isinstance(self.liveness_poll, (int, float)) or self.liveness_poll <= 0:
            raise ValueError(f"invalid liveness_poll {self.liveness_poll!r}")
        if self.strategy == SIMPLE_ONE_FOR_ONE and self.auto_shutdown != NEVER:
            raise ValueError("auto_shutdown is not allowed with simple_one_for_one")


def supervisor_spec(id: Hashable, flags: SupFlags, children: list[ChildSpec],
                    restart: str = PERMANENT, shutdown: int | str = INFINITY,
                    significant: bool = False, actor_class: type | None = None) -> ChildSpec:
    """A child spec for a supervisor child (type ``supervisor``)."""
    if actor_class is None:
        from .supervisor import Supervisor
        actor_class = Supervisor
    return ChildSpec(id=id, start=(actor_class, (flags, list(children))), restart=restart,
                     shutdown=shutdown, type=SUPERVISOR, significant=significant)
