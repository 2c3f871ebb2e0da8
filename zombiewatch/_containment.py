"""Containment: everything a run starts can be stopped, even after the runner dies.

``contain()`` sets it up before anything is started and yields a ``Box``:

- a **cgroup v2 group** of its own where one is writable
  (``cgroup.kill``, Linux 5.14+): the runner moves itself into a new child
  of its own cgroup, so everything it starts from then on is a member,
  whatever session, group or parent it moves to. ``cgroup.kill`` stops
  them all at once, daemons included.
- a **guard process**, always: a fork of the runner, in a session of its
  own (a Ctrl-C or a kill of the runner's process group does not reach it),
  that waits for the runner to close a pipe. The kernel closes it when
  the runner dies, however it dies; the guard then stops what the runner
  started: the group's members (SIGTERM, ``GUARD_GRACE``, then
  ``cgroup.kill``) or, without a group, the trees of the runner's children
  it recorded every ``GUARD_POLL`` seconds, which it freezes (SIGSTOP),
  then kills.

``stop_processes`` is the one teardown: SIGTERM to every live process a
callable lists, up to a grace period, then SIGKILL until none is left.
docs/DESIGN.md, Containment, says why a group and why the fallback.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Callable, Iterable, Iterator

from zombiewatch import _platform, _procfs
from zombiewatch._backoff import poll_until

GUARD_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when the runner died
GUARD_POLL = 0.1  # seconds between two records of the runner's children (no group)
KILL_TIMEOUT = 5.0  # seconds to go on killing a tree that keeps forking
NO_CGROUP_ENV = "ZOMBIEWATCH_NO_CGROUP"  # set (to anything): the guard's own records only

_DONE = b"d"  # the runner's last word to its guard: a normal end, nothing to say


def live(pids: Iterable[int]) -> list[int]:
    """The processes of ``pids`` that still run: not gone, not zombies."""
    found = []
    for pid in pids:
        stat = _procfs.read_stat(pid)
        if stat is not None and stat.state != "Z":
            found.append(pid)
    return found


def descendants(pid: int, exclude: Iterable[int] = ()) -> list[int]:
    """Every descendant of ``pid`` (zombies included), skipping ``exclude``
    and what lies below them."""
    skip = set(exclude)
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in _procfs.read_children(stack.pop()):
            if child not in skip:
                skip.add(child)
                found.append(child)
                stack.append(child)
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        # ESRCH: gone since it was listed; EPERM: it changed its credentials
        # (setuid) and is not ours to stop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_processes(
    pids: Callable[[], Iterable[int]], grace: float, kill_timeout: float = KILL_TIMEOUT
) -> int:
    """Stop every live process ``pids()`` lists; return how many there were.

    SIGTERM to each, up to ``grace`` seconds for them all to exit, then
    SIGKILL to whatever ``pids()`` lists, again and again (a process can
    fork between the listing and the signal) until nothing is listed or
    ``kill_timeout`` passes. Zombies are dead already and never waited for:
    their parents (or the runner's orphan collector) reap them.
    """
    first = live(pids())
    if not first:
        return 0
    _signal(first, signal.SIGTERM)
    if not poll_until(lambda: not live(pids()), grace):

        def killed() -> bool:
            left = live(pids())
            _signal(left, signal.SIGKILL)
            return not left

        poll_until(killed, kill_timeout)
    return len(first)


# -- cgroup v2 ----------------------------------------------------------------


def _own_cgroup_dir() -> str | None:
    """The directory of this process's cgroup v2 group, or None."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    if path is None:
        return None
    for fields in mounts:
        # ID PARENT DEV ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        fstype = fields[fields.index("-") + 1] if "-" in fields else ""
        root, mountpoint = fields[3], fields[4]
        if fstype == "cgroup2" and (path + "/").startswith(root.rstrip("/") + "/"):
            return mountpoint + path[len(root.rstrip("/")) :].rstrip("/")
    return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _members(group: str) -> list[int]:
    """The pids in cgroup ``group`` (an empty list once it is gone)."""
    try:
        with open(os.path.join(group, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _make_group() -> tuple[str, str] | None:
    """Create a child of our own cgroup; return (it, our cgroup).

    None where that cannot be done: no cgroup v2, no ``cgroup.kill``
    (before Linux 5.14), or no write access (a container's read-only
    /sys/fs/cgroup, a user's session scope).
    """
    if not _platform.LINUX or os.environ.get(NO_CGROUP_ENV):
        return None
    home = _own_cgroup_dir()
    if home is None or not os.access(home, os.W_OK):
        return None
    group = os.path.join(home, f"zombiewatch-{os.getpid()}")
    with contextlib.suppress(OSError):
        os.rmdir(group)  # an empty one left by a dead runner whose pid we reuse
    try:
        os.mkdir(group)
    except OSError:
        return None
    if not os.path.exists(os.path.join(group, "cgroup.kill")):
        _rmdir(group)
        return None
    return group, home


def _enter(group: str) -> bool:
    """Move this process into ``group``; False if refused (EACCES where the
    common ancestor is not ours to write, EBUSY where it runs controllers)."""
    try:
        _write(os.path.join(group, "cgroup.procs"), str(os.getpid()))
    except OSError:
        return False
    return True


def _empty_group(group: str, grace: float, exclude: int = 0) -> int:
    """Stop every member of ``group`` but ``exclude``, then remove it; return
    how many there were."""

    def members() -> list[int]:
        return [pid for pid in live(_members(group)) if pid != exclude]

    first = members()
    if first:
        _signal(first, signal.SIGTERM)
        if not poll_until(lambda: not members(), grace):
            with contextlib.suppress(OSError):
                _write(os.path.join(group, "cgroup.kill"), "1")
    # A group is removable once no task runs in it; the kernel takes a
    # moment to account a killed task as gone.
    poll_until(lambda: _rmdir(group), KILL_TIMEOUT)
    return len(first)


def _rmdir(group: str) -> bool:
    try:
        os.rmdir(group)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


# -- the guard ----------------------------------------------------------------


def _guard(runner: int, pipe: int, group: str | None, ignore: set[int], session: int) -> None:
    """The guard's life: record, wait for the runner's end, stop what is left.

    Without a group it records, every ``GUARD_POLL`` seconds, the runner's
    children (what it started, and the orphans it adopted) and their
    sessions. When the runner dies, the kernel's parent-death signal may
    stop a target before the guard looks, and its children go to PID 1:
    they are found again by their session. ``ignore``: children the
    runner had before (not the run's); ``session``: the runner's own, which
    is never the run's.
    """
    roots: dict[int, int] = {}  # the runner's children at the last look: pid -> start ticks
    sessions: set[int] = set()  # and their sessions
    me = os.getpid()
    done = False
    while True:
        if select.select([pipe], [], [], None if group else GUARD_POLL)[0]:
            data = os.read(pipe, 16)
            done = done or _DONE in data
            if not data:
                break  # the runner closed the pipe, or died
        if group is None:
            roots, sessions = {}, set()
            for pid in _procfs.read_children(runner):
                stat = _procfs.read_stat(pid)
                if pid != me and pid not in ignore and stat is not None and stat.state != "Z":
                    roots[pid] = stat.start_ticks
                    with contextlib.suppress(OSError):
                        sessions.add(os.getsid(pid))
    if group is not None:
        # The runner itself, if it closed the pipe on its way out (an
        # interrupt before its cleanup ran), ends by itself.
        stopped = _empty_group(group, GUARD_GRACE, exclude=runner)
    else:
        # A session id cannot be reused while any process is in the session,
        # and each was seen in use a moment ago.
        sessions -= {session, os.getsid(0)}
        found = [pid for pid, ticks in roots.items() if _same(pid, ticks)]
        stopped = _freeze_and_kill(found + _session_members(sessions, exclude={me, runner}))
    if stopped and not done:
        with contextlib.suppress(OSError):
            os.write(
                2,
                f"zombiewatch: the runner (pid {runner}) died; its guard stopped"
                f" {stopped} process(es) it had started\n".encode(),
            )


def _same(pid: int, start_ticks: int) -> bool:
    stat = _procfs.read_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks and stat.state != "Z"


def _session_members(sessions: set[int], exclude: set[int]) -> list[int]:
    """Every process in one of ``sessions``: one pass over ``/proc``."""
    found = []
    for entry in os.listdir("/proc") if sessions else ():
        if entry.isdigit() and int(entry) not in exclude:
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) in sessions:
                    found.append(int(entry))
    return found


def _freeze_and_kill(roots: list[int]) -> int:
    """Stop the trees under ``roots`` for good: SIGSTOP each process found,
    walk again until no new one appears (a stopped process neither forks
    nor exits, so its children stay its children), then SIGKILL them all."""
    frozen: set[int] = set()
    while True:
        found = set(live([*roots, *(d for r in roots for d in descendants(r))])) - frozen
        if not found:
            break
        _signal(found, signal.SIGSTOP)
        frozen |= found
    _signal(frozen, signal.SIGKILL)
    return len(frozen)


class Box:
    """What ``contain()`` yields: the group (if any) and the guard."""

    def __init__(
        self, group: str | None, home: str | None, guard_pid: int, pipe: int, before: set[int]
    ) -> None:
        self.group = group
        self.before = before  # the runner's children before the box: not the run's
        self.home = home
        self.guard_pid = guard_pid
        self._pipe = pipe
        self.method = "cgroup" if group else "guard"

    def members(self) -> list[int]:
        """Every live process the run started that is still there (never the
        runner or its guard): the group's members, or the runner's live
        descendants. Without a group, an orphan adopted by PID 1 (``run
        --no-subreaper``) that left its session is no longer listed."""
        me = os.getpid()
        if self.group is not None:
            return [pid for pid in live(_members(self.group)) if pid != me]
        return live(descendants(me, exclude=[self.guard_pid, *self.before]))

    def stop_all(self, grace: float) -> int:
        """Stop every member (``stop_processes``); return how many there were."""
        return stop_processes(self.members, grace)

    def close(self, grace: float) -> int:
        """Stop what is left, give the group up and end the guard; return
        how many processes were still there. SIGINT and SIGTERM wait until
        it is done."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            return self._close(grace)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _close(self, grace: float) -> int:
        left = self.stop_all(grace)
        if self.group is not None and self.home is not None:
            with contextlib.suppress(OSError):
                _write(os.path.join(self.home, "cgroup.procs"), str(os.getpid()))
                _empty_group(self.group, 0)
        with contextlib.suppress(OSError):
            os.write(self._pipe, _DONE)
        os.close(self._pipe)
        _reap(self.guard_pid)
        return left


def _reap(pid: int) -> None:
    """Collect the guard: it exits as soon as it has checked the group is empty."""

    def gone() -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return True

    if not poll_until(gone, KILL_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _start_guard(group: str | None, before: set[int]) -> tuple[int, int]:
    """Fork the guard; return its pid and our end of its pipe.

    A fork, not a new interpreter: it starts in a millisecond and needs
    only ``_procfs``. Call it before any thread is started.
    """
    runner = os.getpid()
    session = os.getsid(0)
    r, w = os.pipe()  # both ends close on exec: no program we start holds them
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the guard
        code = 0
        try:
            os.close(w)
            os.setsid()  # out of the runner's process group and terminal
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)  # stderr stays: the one line if the runner died
            os.closerange(3, r)
            os.closerange(r + 1, os.sysconf("SC_OPEN_MAX"))
            _guard(runner, r, group, before, session)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(r)
    return pid, w


def _open_box() -> Box:
    made = _make_group()
    group, home = made if made is not None else (None, None)
    before = set(_procfs.read_children(os.getpid()))
    # The guard is forked before the runner enters the group: a member of
    # the group would be killed with what it guards.
    try:
        guard_pid, pipe = _start_guard(group, before)
    except BaseException:
        if group is not None:
            _rmdir(group)
        raise
    box = Box(group, home, guard_pid, pipe, before)
    if group is not None and not _enter(group):
        box.close(grace=0)  # the guard was told of a group: start one without
        guard_pid, pipe = _start_guard(None, before)
        box = Box(None, None, guard_pid, pipe, before)
    return box


@contextlib.contextmanager
def contain() -> Iterator[Box]:
    """Hold everything started in the block; stop what is left at its end.

    Call before starting anything, and before any thread is started (the
    guard is a fork). On a normal end, ``Box.close`` stops whatever is
    left; if the runner dies instead, its guard does. SIGINT and SIGTERM
    wait while the box is set up, so an interrupt never leaves a guard
    without its ``close``.
    """
    box = None
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        box = _open_box()
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a pending one is raised here
        yield box
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if box is not None:
            box.close(grace=GUARD_GRACE)
