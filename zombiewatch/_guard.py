"""Watch one test's process tree for the zombies it leaves: the measuring half
of the pytest plugin.

A ``ZombieGuard`` takes a baseline look at the descendants of the test
process when the test begins, and later decides which zombies are the
test's: those of processes it started (not running at the baseline, not
started by a fixture of a wider scope) that are held inside its tree. The
others are someone else's (``inherited()``) or escaped the tree
(``escapes()``, an adopter holds them now). It waits, at most the settle
window, for processes the test started to finish and for its zombies to be
collected, runs ``gc.collect()`` once before it would fail, then writes
the failure message, with where each process was started (``_starts``). The
tree walk is ``monitor.Monitor``'s (``/proc/PID/task/*/children``, so a look
costs O(descendants)); when the process has no child at all, a look is one
``waitid`` call instead. This module adds the bookkeeping a test needs and
never reaps, except in ``reap()``, which the plugin calls only for
``--zombiewatch-reap``.

Importing it stays cheap: psutil and the monitor are imported by the first
guard, not here, because pytest imports the plugin in every session.
"""

from __future__ import annotations

import functools
import gc
import os
import shlex
import time
import types
from collections.abc import Callable, Collection, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from zombiewatch import _defaults, _platform, _procfs, _proctl
from zombiewatch._backoff import poll_until
from zombiewatch._text import clip

if TYPE_CHECKING:
    from zombiewatch._starts import Recorder
    from zombiewatch.monitor import MonitorStats, Sample, Zombie

DEFAULT_SETTLE = _defaults.SETTLE  # seconds; the CLI's --settle default, same meaning
DEFAULT_ALLOW = _defaults.MAX_LEAKED  # the CLI's --max-leaked default, same meaning
MAX_LISTED = 20  # zombies spelled out in one message; a `none` server has thousands
MAX_CMDLINE = 200  # characters of a command line in the message
_ZOMBIE = "zombie"  # psutil.STATUS_ZOMBIE, which this module does not import at load
MAX_ESCAPES = 1000  # escaped orphans kept between two guards' looks


@functools.cache
def unavailable_reason() -> str | None:
    """Say why a guard cannot see this process's children here, or None.

    The monitor lists children through ``/proc/PID/task/TID/children``,
    which exists only on Linux built with CONFIG_PROC_CHILDREN. Without it
    every look would find no child at all and every test would pass, so
    the plugin refuses to guard instead.
    """
    if not _platform.LINUX:
        return "it reads /proc/PID/task/TID/children, which only Linux has"
    if not _platform.can_use_children_file():
        return "this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN is off)"
    return None


class ZombieLeak(AssertionError):
    """A guarded test left more zombie processes than it may."""


class ZombiewatchWarning(UserWarning):
    """Something a guarded test did with processes that did not fail it: a
    process left running, an orphan that escaped its tree, a zombie that
    only the garbage collector collected."""


# Records are NamedTuples, not dataclasses: pytest imports this module in
# every session, and each dataclass costs about a millisecond to create.


class Settings(NamedTuple):
    """What a guarded test is held to."""

    settle: float = DEFAULT_SETTLE
    allow: int = DEFAULT_ALLOW
    reap: bool = False
    gc: bool = True  # run gc.collect() once before failing a test
    fail_orphans: bool = False  # fail a test whose orphans escaped its tree


class LeakedZombie(NamedTuple):
    """A zombie the guarded test left, with the bounds on its age we know.

    Sampled, it was first seen in state Z at one look and was not a zombie
    at the look before, so it became one between the two: ``min_age`` and
    ``max_age`` are the seconds since each, taken when this was made. From
    kernel events (``exact``) both are the seconds since its exit.
    """

    pid: int
    ppid: int
    name: str
    min_age: float
    max_age: float
    not_yet_at: str  # the look that did not see it as a zombie
    running_at_start: bool  # alive when the test began: someone earlier started it
    exact: bool = False  # its age is from the kernel's exit time
    # Where the call that started it is: "tests/test_x.py:42 in test_y
    # (subprocess.Popen(['true']))"; "" if no call of the test matched it.
    started_at: str = ""


class Escaped(NamedTuple):
    """A process of the test's tree that left it: its parent exited without
    collecting it, and an adopter (PID 1, a subreaper) holds it now."""

    pid: int
    name: str
    orphaned_by: int  # the parent it had in the tree (0: unknown)
    held_by: int  # its parent now (0: collected since)
    zombie: bool  # it had exited when it left the tree (or when seen outside it)


class _Look(NamedTuple):
    started: float  # monotonic time before the walk began
    label: str


_new_look = tuple.__new__
_EMPTY: Any = types.MappingProxyType({})  # a dict that is never written


class _TreeMonitor(Protocol):
    """What the guard uses of its monitor."""

    zombies: dict[int, Zombie]
    stats: MonitorStats
    # (pid, its creator, who holds it now, a zombie then, its name) of each process
    # that left the tree for an adopter, as kernel events told; the sampler
    # leaves it empty and the guard finds escapes at its looks.
    escapes: list[tuple[int, int, int, bool, str]]

    @property
    def last(self) -> dict[int, str]:
        """{pid: status} of the tree at the last look, zombies included."""
        ...

    def sample(self) -> Sample: ...

    def close(self) -> None: ...


@functools.cache
def _with_events() -> bool:
    """Can guards watch through kernel events here? Asked on the first guard:
    the probe imports psutil, which a session that guards nothing should
    not pay for."""
    from zombiewatch import observe

    return observe.events_unavailable_reason() is None


@functools.cache
def _tree_monitor_class() -> Callable[[int], _TreeMonitor]:
    # Imported on the first guard: psutil and click cost tens of ms, and a
    # session that guards nothing should not pay them.
    if _with_events():
        from zombiewatch.events import EventMonitor

        class EventTreeMonitor(EventMonitor):
            """Kernel events: every zombie the test makes is seen, however
            briefly, and a leaked one's age is exact."""

            def __init__(self, root: int) -> None:
                self.escapes: list[tuple[int, int, int, bool, str]] = []
                super().__init__(root)

            @property
            def last(self) -> dict[int, str]:
                return self.statuses()

            def _adopted_by(self, proc: Any, adopter: int) -> None:
                # The one place the event monitor lets a process out of the
                # tree (no adopters are watched here): an escaped orphan.
                if len(self.escapes) < MAX_ESCAPES:
                    # Named now: PID 1 may collect it before the guard looks.
                    stat = _procfs.read_stat(proc.pid)
                    name = stat.comm if stat is not None else "?"
                    zombie = proc.exit_ns is not None
                    self.escapes.append((proc.pid, proc.creator, adopter, zombie, name))
                super()._adopted_by(proc, adopter)

        return EventTreeMonitor

    from zombiewatch.monitor import Monitor

    class TreeMonitor(Monitor):
        """A ``Monitor`` that also keeps the statuses of its last walk, so the
        guard knows which live processes the test started."""

        def __init__(self, root: int) -> None:
            super().__init__(root)
            self.last: dict[int, str] = {}
            self.escapes: list[tuple[int, int, int, bool, str]] = []

        def walk(self) -> tuple[dict[int, str], set[int]]:
            statuses, listed = super().walk()
            self.last = statuses
            return statuses, listed

    return TreeMonitor


# One monitor per process, shared by the guards of its tests: the psutil
# handles of long-lived children (a session's server) are made once, not
# once per test. Keyed by pid, so a forked pytest (pytest-forked) makes its own.
_MONITORS: dict[int, _TreeMonitor] = {}


def _monitor_of(pid: int) -> _TreeMonitor:
    monitor = _MONITORS.get(pid)
    if monitor is None:
        monitor = _MONITORS[pid] = _tree_monitor_class()(pid)
    return monitor


class ZombieGuard:
    """Watch the descendants of this process for zombies a test leaves.

    The ``zombie_guard`` fixture hands you the guard of the running test:

    - ``zombie_guard.zombies``: the test's zombies now (one look, no wait);
    - ``zombie_guard.count()``: how many there are;
    - ``zombie_guard.check()``: wait up to the settle window for them to be
      collected, then fail if more than ``allow`` remain.

    A zombie is the test's when the test started it (it was not running
    when the test began, and no longer-lived fixture started it) and it is
    held inside the test's tree. Zombies of processes that were already
    running are someone else's (``inherited()``); a zombie an adopter
    holds (PID 1, a subreaper) escaped the tree (``escapes()``).
    """

    _monitor: _TreeMonitor | None = None
    # Until a monitor is attached the guard has nothing to note: these are
    # empty and read-only then, and dicts of its own from then on.
    _tree: dict[int, str] = _EMPTY  # {pid: status} of the tree at the last look
    # pid -> the last look of this guard that did not see it as a zombie
    _not_yet: dict[int, _Look] = _EMPTY
    # pids whose zombie is not this test's though it started them: a
    # fixture of a wider scope did (pid -> who), set by the plugin.
    foreign: dict[int, str] = _EMPTY
    _escaped: dict[int, Escaped] = _EMPTY
    _last_look: _Look | None = None
    _seen: AbstractSet[int] = frozenset()  # zombies at this guard's last look
    _live: AbstractSet[int] = frozenset()  # the tree's live processes at the last look
    baseline_pids: frozenset[int] = frozenset()
    baseline_zombies: frozenset[int] = frozenset()
    gc_collected: Sequence[LeakedZombie] = ()  # went away only after gc.collect()
    # The test's process-starting calls (set by the plugin), to say where
    # each leaked process was started.
    starts: Recorder | None = None
    session: Any = None  # the plugin's state of the session, for the plugin
    outcome: dict[str, Any] | None = None  # the plugin's counts for the test's report

    def __init__(
        self,
        settings: Settings,
        *,
        started_by: str = "when the test began",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._clock = clock
        self._sleep = sleep
        # The monitor is made by the first look that finds a child: most
        # tests start none, and for them a look is one system call, with no
        # psutil, no monitor, no read of /proc and no bookkeeping beyond
        # the class's defaults.
        self._look(started_by)
        if self._monitor is not None:
            self.baseline_zombies = frozenset(self._monitor.zombies)
            self.baseline_pids = frozenset(self._tree)
            self._escaped.clear()  # what left the tree before the test began is not its own

    @property
    def settle(self) -> float:
        """Seconds to wait for the test's zombies to be collected."""
        return self.settings.settle

    @property
    def allow(self) -> int:
        """Zombies the test may leave and still pass."""
        return self.settings.allow

    # -- looking ---------------------------------------------------------------

    def _look(self, label: str) -> None:
        look = _new_look(_Look, (self._clock(), label))  # as _Look(...), without its Python __new__
        previous, self._last_look = self._last_look or look, look
        if self._monitor is None:
            # Kernel events must be heard from the test's start, so their
            # watcher is made at once; the sampler only when there is a
            # child to look at.
            if not _with_events() and not _proctl.has_children():
                # No descendant at all, so no zombie either. Apart from
                # this process's own, the shared monitor's kept /proc
                # descriptors are for processes gone since its last
                # sample: release them, or the session would hold them
                # until some later test starts a child.
                shared = _MONITORS.get(self.pid)
                if shared is not None:
                    shared.close()
                return
            self._monitor = _monitor_of(self.pid)
            self._not_yet, self.foreign, self._escaped = {}, {}, {}
            if _with_events():
                del self._monitor.escapes[:]  # escapes from before this guard
            elif self._monitor.zombies:
                # The shared sampler keeps a zombie it saw in an earlier test
                # until it is collected, wherever it went since. This process
                # had no descendant a moment ago, so each one is outside the
                # tree: an earlier test's escape, never this one's.
                self.baseline_zombies = frozenset(self._monitor.zombies)
        monitor = self._monitor
        monitor.sample()
        # Read once per look: from events, ``last`` is built on each read.
        self._tree = monitor.last
        # Compared with this guard's own last look, not the monitor's: the
        # monitor is shared, and a nested session (pytester) samples it too.
        for pid in monitor.zombies.keys() - self._seen:
            self._not_yet[pid] = previous
        self._seen = set(monitor.zombies)
        self._find_escapes(monitor)

    def _find_escapes(self, monitor: _TreeMonitor) -> None:
        """Note the processes that left the tree since the last look.

        Kernel events say each one. The sampler does not (it watches no
        adopter, which would mean reading PID 1's children at every look),
        so the guard checks what it can see: a zombie whose holder is no
        longer in the tree, and a process it saw running that the walk no
        longer finds. Only those are read from /proc, so a clean look
        costs nothing more. An escape between two looks is seen only by
        kernel events.
        """
        if monitor.escapes:
            for pid, creator, held_by, zombie, name in monitor.escapes:
                self._escape(pid, creator, held_by, zombie, name)
            del monitor.escapes[:]
        statuses = self._tree
        if not statuses and not self._live and not monitor.zombies:
            return  # the clean test's look: nothing in the tree, nothing before
        for pid, found in monitor.zombies.items():
            if pid in self.baseline_zombies or pid in self._escaped or found.ppid == self.pid:
                continue  # this process is alive, so a child of its own is still its own
            if statuses.get(found.ppid, _ZOMBIE) != _ZOMBIE:
                continue  # its holder is alive in the tree: still its child
            stat = _procfs.read_stat(pid)
            if stat is not None and stat.ppid != self.pid and stat.ppid not in statuses:
                self._escape(pid, found.ppid, stat.ppid, True, stat.comm)
        live = {pid for pid, status in statuses.items() if status != _ZOMBIE}
        for pid in self._live - live:
            if pid in statuses or pid in self._escaped:
                continue  # a zombie of the tree now, or known
            stat = _procfs.read_stat(pid)
            if stat is not None and stat.ppid != self.pid and stat.ppid not in statuses:
                self._escape(pid, 0, stat.ppid, stat.state == "Z", stat.comm)
        self._live = live

    def started_at(self, pid: int, ppid: int = 0) -> str:
        """Where the test started ``pid``, or the process that started it (its
        holder, when that is not this process); "" if unknown."""
        if self.starts is None:
            return ""
        found = self.starts.started(pid)
        if not found and ppid and ppid != self.pid:
            parent = self.starts.started(ppid)
            if parent:
                found = f"its parent pid {ppid}, by {parent}"
        return found

    def _escape(
        self, pid: int, orphaned_by: int, held_by: int, zombie: bool, name: str | None = None
    ) -> None:
        if name is None:
            stat = _procfs.read_stat(pid)
            name = stat.comm if stat is not None else "?"
        self._escaped[pid] = Escaped(pid, name, orphaned_by, held_by, zombie)

    def _zombies(self) -> dict[int, Zombie]:
        return self._monitor.zombies if self._monitor is not None else {}

    def _statuses(self) -> dict[int, str]:
        return self._tree

    def _new_pids(self) -> set[int]:
        """The zombies that are this test's: see the class docstring."""
        if not self._zombies():
            return set()
        return (
            set(self._zombies())
            - self.baseline_zombies
            - self.baseline_pids
            - self.foreign.keys()
            - self._escaped.keys()
        )

    def _running(self) -> set[int]:
        """Live processes the test started (not a wider fixture's)."""
        if not self._tree:
            return set()
        return {
            pid
            for pid, status in self._tree.items()
            if status != _ZOMBIE and pid not in self.baseline_pids and pid not in self.foreign
        }

    def running(self, label: str) -> set[int]:
        """Look now, and return the live processes the test started."""
        self._look(label)
        return self._running()

    def _describe_zombies(self, pids: Collection[int]) -> list[LeakedZombie]:
        if not pids:
            return []
        now = self._clock()
        found = []
        zombies = self._zombies()
        for pid in sorted(pids):
            zombie = zombies[pid]
            not_yet = self._not_yet.get(pid)
            # From events its exit time is known: no bounds needed.
            since = not_yet.started if not_yet and not zombie.exact else zombie.since
            found.append(
                LeakedZombie(
                    pid=pid,
                    ppid=zombie.ppid,
                    name=zombie.name,
                    min_age=zombie.age(now),
                    max_age=now - since,
                    not_yet_at=not_yet.label if not_yet else "?",
                    running_at_start=pid in self.baseline_pids,
                    exact=zombie.exact,
                    started_at=self.started_at(pid, zombie.ppid),
                )
            )
        return found

    def _leaked(self) -> list[LeakedZombie]:
        return self._describe_zombies(self._new_pids())

    def inherited(self) -> list[LeakedZombie]:
        """Zombies held in the tree that are not this test's: of processes
        running when it began, or started by a fixture of a wider scope."""
        if not self._zombies():
            return []
        zombies = self._zombies().keys() - self.baseline_zombies - self._escaped.keys()
        return self._describe_zombies(zombies & (self.baseline_pids | self.foreign.keys()))

    def escapes(self) -> list[Escaped]:
        """Processes the test started that left its tree, in pid order."""
        if not self._escaped:
            return []
        return [
            e
            for pid, e in sorted(self._escaped.items())
            if pid not in self.baseline_pids and pid not in self.foreign
        ]

    def clean(self) -> bool:
        """Nothing in the tree and nothing escaped at the last look: nothing
        to say about this test."""
        return not (self._tree or self._escaped or self._zombies() or self.gc_collected)

    def left_running(self) -> list[int]:
        """Processes the test started that run on after it (at the last look)."""
        return sorted(self._running())

    @property
    def zombies(self) -> list[LeakedZombie]:
        """Look once, now, and return the zombies this test left."""
        self._look("when zombie_guard looked")
        return self._leaked()

    def count(self) -> int:
        """Look once, now, and return how many zombies this test left."""
        return len(self.zombies)

    # -- deciding --------------------------------------------------------------

    def settled(
        self,
        settle: float | None = None,
        allow: int | None = None,
        label: str = "at the previous look",
    ) -> list[LeakedZombie]:
        """Wait up to ``settle`` s, then return the test's zombies.

        The wait ends early once no more than ``allow`` zombies are left and
        no process the test started is still running (a running one may
        become a zombie a moment later). Polls with exponential backoff
        against a deadline, never one fixed sleep.

        If too many are left, the garbage collector runs once (unless the
        settings say not to) and the guard looks once more: a child kept by an
        object in a reference cycle (pexpect, ptyprocess) is collected by
        that object's ``__del__``, which otherwise runs whenever the
        collector happens to, and the verdict would depend on it. Those
        that went away only then are in ``gc_collected``.
        """
        self._look(label)
        if self._monitor is None:
            return []  # no child at all (the clean test): nothing to wait for
        settle = self.settings.settle if settle is None else settle
        allow = self.settings.allow if allow is None else allow
        looked = [True]  # the first look is the one above

        def quiet() -> bool:
            # Most leaks are collected within milliseconds or not at all,
            # and the backoff's first looks come that fast.
            if not looked:
                self._look("at the previous look of the settle window")
            looked.clear()
            return len(self._new_pids()) <= allow and not self._running()

        poll_until(quiet, settle, clock=self._clock, sleep=self._sleep)
        leaked = self._leaked()
        if len(leaked) > allow and self.settings.gc and gc.collect():
            # One more look, no second window: a __del__ that collects its
            # child has done so by the time collect() returns.
            self._look("after gc.collect()")
            left = self._new_pids()
            self.gc_collected = [z for z in leaked if z.pid not in left]
            leaked = self._leaked()
        return leaked

    def check(self, settle: float | None = None, allow: int | None = None) -> None:
        """Fail (``ZombieLeak``) if this test has left more than ``allow`` zombies.

        Waits up to the settle window for them to be collected first; pass
        ``settle=0`` to look only once.
        """
        __tracebackhide__ = True
        settle = self.settle if settle is None else settle
        allow = self.allow if allow is None else allow
        leaked = self.settled(settle, allow, label="when zombie_guard.check() looked")
        if len(leaked) > allow:
            raise ZombieLeak(self.describe(leaked, settle, allow))

    # -- reporting -------------------------------------------------------------

    def describe(
        self,
        leaked: list[LeakedZombie],
        settle: float,
        allow: int,
        reaped: str = "",
        escaped: list[Escaped] | None = None,
    ) -> str:
        """Write the failure message: one entry per zombie, then advice."""
        if leaked:
            lines = [
                f"zombiewatch: this test left {_plural(len(leaked), 'zombie process')} "
                f"(allowed: {allow}), still there after a {settle:g} s settle window:"
            ]
        else:
            lines = ["zombiewatch: this test orphaned processes (--zombiewatch-fail-orphans):"]
        for zombie in leaked[:MAX_LISTED]:
            lines.extend(self._describe_one(zombie))
        if len(leaked) > MAX_LISTED:
            lines.append(f"  ... and {len(leaked) - MAX_LISTED} more")
        lines.extend(self.escape_lines(escaped or []))
        if self.gc_collected:
            lines.append(self.gc_text(self.gc_collected))
        running = sorted(self._running())
        if running:
            lines.append(
                "still running, started during this test: "
                + ", ".join(f"pid {pid} {self._name(pid)!r}" for pid in running[:MAX_LISTED])
            )
        if reaped:
            lines.append(reaped)
        lines.append(
            "Collect every child you start: Popen.wait() or .communicate(), "
            "os.waitpid(pid, 0), multiprocessing's Process.join()."
        )
        return "\n".join(lines)

    def escape_lines(self, escaped: list[Escaped]) -> list[str]:
        """One line per escaped orphan: who it is, who orphaned it, who holds it."""
        lines = []
        for e in escaped[:MAX_LISTED]:
            state = "a zombie" if e.zombie else "still running"
            if e.orphaned_by and e.orphaned_by == e.held_by:
                # Its parent did not exit: it left the tree itself, holding it.
                how = f"its parent pid {e.held_by} left the tree with it and holds it now"
            else:
                by = f"its parent pid {e.orphaned_by}" if e.orphaned_by else "its parent"
                held = f"pid {e.held_by} holds it now" if e.held_by else "collected since"
                how = f"{by} exited without collecting it; {held}"
            lines.append(f"  pid {e.pid} {e.name!r} escaped this test's tree, {state}: {how}")
            where = self.started_at(e.orphaned_by) if e.orphaned_by else ""
            if where:
                lines.append(f"    its parent was started at {where}")
            else:
                where = self.started_at(e.pid)
                if where:
                    lines.append(f"    started at {where}")
        if len(escaped) > MAX_LISTED:
            lines.append(f"  ... and {len(escaped) - MAX_LISTED} more escaped")
        return lines

    @staticmethod
    def gc_text(collected: Sequence[LeakedZombie]) -> str:
        """Say which zombies went away only when the garbage collector ran."""
        pids = ", ".join(f"pid {z.pid} {z.name!r}" for z in collected[:MAX_LISTED])
        return (
            f"{pids}: collected only after gc.collect(), so held by an object in a "
            "reference cycle: close it explicitly (its close(), wait() or join())"
        )

    def _describe_one(self, zombie: LeakedZombie) -> list[str]:
        parent = self._parent_text(zombie.ppid)
        lines = [
            f"  pid {zombie.pid} {zombie.name!r}, child of pid {zombie.ppid} {parent}",
            (
                f"    a zombie for {zombie.min_age:.3f} s since its exit (kernel events;"
                f" not one yet {zombie.not_yet_at})"
                if zombie.exact
                else f"    a zombie for {zombie.min_age:.2f} s at least,"
                f" {zombie.max_age:.2f} s at most (not one yet {zombie.not_yet_at})"
            ),
            "    command line: none (a zombie keeps none on Linux); its parent's: "
            + self._cmdline(zombie.ppid),
        ]
        if self.starts is not None:
            lines.append(
                f"    started at {zombie.started_at}"
                if zombie.started_at
                else "    started at: unknown (no process-starting call of this test matched it)"
            )
        return lines

    def _parent_text(self, ppid: int) -> str:
        if ppid == self.pid:
            return "(this test process)"
        if ppid in self.baseline_pids:
            return "(a process that was running when this test began)"
        return "(a process this test started)"

    @staticmethod
    def _name(pid: int) -> str:
        stat = _procfs.read_stat(pid)
        return stat.comm if stat is not None else "?"  # gone since the last look

    @staticmethod
    def _cmdline(pid: int) -> str:
        import psutil

        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.ZombieProcess:
            return f"none either (pid {pid} is a zombie too)"
        except psutil.NoSuchProcess:
            return f"unknown (pid {pid} has exited)"
        except psutil.AccessDenied:
            return f"unknown (may not read pid {pid})"
        if not argv:
            return "empty"
        # One line, bounded: a `python -c SCRIPT` parent would spill the script.
        return clip(shlex.join(argv).replace("\n", "\\n"), MAX_CMDLINE)

    def reap(self, leaked: list[LeakedZombie]) -> tuple[list[int], list[LeakedZombie]]:
        """Collect the listed zombies that are this process's children.

        Returns (pids collected, zombies that are not ours). Only a zombie's
        parent can collect it, so the test's grandchildren stay. Collecting
        takes the exit status away from whoever started the child: a
        ``Popen`` then reports returncode 0, a ``multiprocessing.Process``
        None.
        """
        reaped: list[int] = []
        not_ours: list[LeakedZombie] = []
        for zombie in leaked:
            if zombie.ppid != self.pid:
                not_ours.append(zombie)
                continue
            try:
                # WNOHANG: if the zombie was collected since our look and its
                # pid reused by a live child, we must not block on that one.
                pid, _ = os.waitpid(zombie.pid, os.WNOHANG)
            except ChildProcessError:
                continue  # someone collected it since our look: gone already
            if pid == zombie.pid:
                reaped.append(pid)
            # else pid 0: the pid is a live child now, the zombie is gone
        return reaped, not_ours


def _plural(count: int, noun: str) -> str:
    """``1 zombie process``, ``2 zombie processes``, ``3 tests``."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def reap_text(reaped: list[int], not_ours: list[LeakedZombie]) -> str:
    """Say what ``--zombiewatch-reap`` collected and what it could not."""
    parts = []
    if reaped:
        parts.append("--zombiewatch-reap collected " + ", ".join(f"pid {p}" for p in reaped))
    for zombie in not_ours:
        parts.append(
            f"--zombiewatch-reap could not collect pid {zombie.pid}: it is not a child "
            f"of this process, and only its parent (pid {zombie.ppid}) can collect it"
        )
    return "\n".join(parts)
