"""Process-level glue between the supervisors library, Thespian and Linux.

Everything here exists because of a measured fact about Thespian 4.0.1 on the
multiprocTCPBase (see docs/thespian-facts.md):

* every actor listens for *pickled* messages on a TCP port bound to all
  interfaces, even with THESPIAN_BASE_IPADDR set.  Unpickling is code
  execution, so :func:`install_loopback_only` rebinds every Thespian socket to
  127.0.0.1;
* a process killed with SIGKILL leaves its children running (ppid 1).
  :func:`install_parent_death_signal` makes every process forked afterwards
  die with its parent (``PR_SET_PDEATHSIG``);
* ``ChildActorExited`` is not delivered reliably when many children die at
  once, so supervisors also poll their children's liveness with
  :func:`process_alive`.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket

LOOPBACK = "127.0.0.1"

# Must be set before thespian.system.transport.IPBase is imported: Thespian
# otherwise "discovers" the public address by routing towards 8.8.8.8.
os.environ.setdefault("THESPIAN_BASE_IPADDR", LOOPBACK)

from thespian.system.transport import IPBase  # noqa: E402

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = None


def _prctl(option: int, arg: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def install_loopback_only() -> None:
    """Make every Thespian socket bind this node's address (127.0.0.1 unless
    :func:`set_node_address` chose another) instead of 0.0.0.0.

    IPActorAddress.bindname is ('', port) for "external" addresses; binding
    '' means INADDR_ANY.  The exported (connect) address, ``sockname``, is
    THESPIAN_BASE_IPADDR (set above): the socket binds exactly that.
    Idempotent."""
    cls = IPBase.IPActorAddress
    if getattr(cls, "_supervisors_loopback", False):
        return

    def bind_args(self):
        host, port = self.bindname[0], self.bindname[1]
        if host in ("", "0.0.0.0", None):
            host = self.sockname[0] if self.sockname[0] not in ("", "0.0.0.0", None) else LOOPBACK
        return ((host, port),)

    cls.bindArgs = property(bind_args)
    cls._supervisors_loopback = True


install_loopback_only()


def set_node_address(address: str) -> None:
    """Every Thespian socket created from now on in this process (and the
    processes it forks: the admin, every actor) binds and advertises
    ``address`` instead of 127.0.0.1: how two actor systems on one machine
    (127.0.0.1, 127.0.0.2) or on two machines form a convention.  Call it
    before the actor system starts.

    Thespian counts every address of the machine as "this system" when it
    compares actor addresses, so 127.0.0.1:P would equal 127.0.0.2:P; a
    node on another address forgets the loopback aliases (its actors never
    use them: they advertise ``address``)."""
    os.environ["THESPIAN_BASE_IPADDR"] = address
    mine = IPBase.thisSystem._myAddresses
    mine.add(address)
    if address != LOOPBACK:
        mine.discard(LOOPBACK)
        mine.discard("localhost")


def set_convention_period(seconds: float) -> None:
    """Members of a Thespian convention re-register with the leader every
    ``seconds`` (Thespian's default: 7 min 22 s), and the leader drops a
    member after three missed registrations: a dead node is noticed in
    about 3 x ``seconds``.  Before the actor system starts (its admin
    process is forked from this one and keeps these values)."""
    from datetime import timedelta

    from thespian.system.admin import convention

    convention.CONVENTION_REREGISTRATION_PERIOD = timedelta(seconds=seconds)
    convention.CONVENTION_RESTART_PERIOD = timedelta(seconds=seconds)

_pdeathsig_installed = False


def _set_pdeathsig_in_child(parent_pid: int) -> None:
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    # The parent may have died between fork() and prctl(): then nobody will
    # ever send the signal.
    if os.getppid() != parent_pid:
        os._exit(1)


def install_parent_death_signal() -> None:
    """From now on, every process forked from this one (and, transitively,
    from its descendants) is SIGKILLed when its parent dies.

    Thespian forks every actor; without this a SIGKILLed supervisor leaves its
    subtree running forever.  Supervisors stop their children before exiting
    in every orderly path, so the signal only fires when a parent died
    abnormally.  Idempotent; fork hooks are inherited by children."""
    global _pdeathsig_installed
    if _pdeathsig_installed:
        return
    _pdeathsig_installed = True
    state = {"pid": os.getpid()}

    def before() -> None:
        state["pid"] = os.getpid()

    def after_in_child() -> None:
        _set_pdeathsig_in_child(state["pid"])

    os.register_at_fork(before=before, after_in_child=after_in_child)


def become_subreaper() -> None:
    """Orphans of our descendants are re-parented to us instead of init, so
    that a server's main process can find and reap everything it started."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def signal_process(pid: int, start_time: int, sig: int) -> bool:
    """Send ``sig`` to the process (pid, start_time) if it still exists:
    through a pidfd, so a pid reused by another process is never hit.
    Returns False if it was gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if process_start_time(pid) != start_time:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process,
    or None if it is gone or a zombie.  Used with the pid to tell a process
    from a later one that reuses its pid."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    st = process_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free now and stays out of the kernel's way: it is
    chosen below the ephemeral range, so the ports the kernel hands out
    meanwhile (every Thespian actor's socket, every outgoing connection's
    local port) cannot take it before its user binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.SystemRandom()
    if low > 2048:
        for _ in range(200):
            port = rng.randrange(1024 if low <= 10000 else 10000, low)
            with socket.socket(family) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(family) as s:   # no room below the range: any free port
        s.bind((host, 0))
        return s.getsockname()[1]


def parent_pid_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root_pid: int) -> list[int]:
    """All live descendants of root_pid (by ppid links), zombies included."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        ppid = parent_pid_of(int(name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    stack = [root_pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def ignore_stop_signals() -> None:
    """SIGTERM and SIGINT are for the main process only.

    Every actor process (and Thespian's admin and logger) ignores them, so a
    signal sent to the whole process group — systemd's default KillMode,
    ``pkill -f``, a terminal's Ctrl-C — reaches the main process, which
    stops the tree in order, instead of killing actors in random order (the
    admin's default action would even take every actor down with it).  To
    kill one actor, use SIGKILL; its supervisor notices."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def install_admin_without_daemon() -> None:
    """Keep Thespian's admin a child of the process that starts the system.

    Thespian's startAdmin daemonizes (setsid, fork, the middle process exits):
    the admin then belongs to nobody, outlives its starter, and a parent-death
    signal set at the fork would fire at once.  Here the admin instead becomes
    the leader of a new process group and stays our child, so

    * it dies with the process that started it (PR_SET_PDEATHSIG),
    * every process of the system shares one process group (pgid = admin pid):
      they can be listed and, as a last resort, killed together,
    * a terminal's Ctrl-C reaches only the main process, which then shuts the
      tree down in order.

    The admin's ``os.setsid`` and ``os.fork`` are replaced, in the admin
    process only and for one call each, by a ``setpgid`` and a no-op.
    Idempotent."""
    from thespian.system import multiprocCommon

    original = multiprocCommon.startAdmin
    if getattr(original, "_supervisors_no_daemon", False):
        return

    def start_admin(*args, **kwargs):
        real_setsid, real_fork = os.setsid, os.fork

        def setsid() -> None:
            os.setsid = real_setsid
            os.setpgid(0, 0)

        def fork() -> int:
            os.fork = real_fork
            return 0  # "we are the child": carry on as the admin

        os.setsid, os.fork = setsid, fork
        ignore_stop_signals()
        return original(*args, **kwargs)

    start_admin._supervisors_no_daemon = True
    multiprocCommon.startAdmin = start_admin


install_admin_without_daemon()


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def process_group_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else None


def children_of(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[1]) == pid:
                out.append(int(name))
    return out


def group_members(pgid: int) -> list[int]:
    """Every process (zombies included) in process group ``pgid``."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[2]) == pgid:
                out.append(int(name))
    return out


def live_group_members(pgid: int) -> list[int]:
    out = []
    for pid in group_members(pgid):
        fields = _stat_fields(pid)
        if fields and fields[0] not in (b"Z", b"X", b"x"):
            out.append(pid)
    return out


def raise_open_files_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (inherited by every
    process forked afterwards): a supervisor holds ~3 descriptors per child."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard
