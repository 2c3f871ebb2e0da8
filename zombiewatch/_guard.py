"""Watch one test's process tree for the zombies it leaves: the measuring half
of the pytest plugin.

A ``ZombieGuard`` takes a baseline look at the descendants of the test
process when the test begins, and later decides which zombies are the
test's: those in state Z now that were not zombies at the baseline. It
waits, at most the settle window, for processes the test started to finish
and for its zombies to be collected, then writes the failure message. The
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
import os
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from zombiewatch import _defaults, _platform, _proctl
from zombiewatch._backoff import poll_until
from zombiewatch._text import clip

if TYPE_CHECKING:
    from zombiewatch.monitor import MonitorStats, Sample, Zombie

DEFAULT_SETTLE = _defaults.SETTLE  # seconds; the CLI's --settle default, same meaning
DEFAULT_ALLOW = _defaults.MAX_LEAKED  # the CLI's --max-leaked default, same meaning
MAX_LISTED = 20  # zombies spelled out in one message; a `none` server has thousands
MAX_CMDLINE = 200  # characters of a command line in the message


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


# Records are NamedTuples, not dataclasses: pytest imports this module in
# every session, and each dataclass costs about a millisecond to create.


class Settings(NamedTuple):
    """What a guarded test is held to."""

    settle: float = DEFAULT_SETTLE
    allow: int = DEFAULT_ALLOW
    reap: bool = False


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


class _Look(NamedTuple):
    started: float  # monotonic time before the walk began
    label: str


class _TreeMonitor(Protocol):
    """What the guard uses of its monitor."""

    zombies: dict[int, Zombie]
    stats: MonitorStats

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

            @property
            def last(self) -> dict[int, str]:
                return self.statuses()

        return EventTreeMonitor

    from zombiewatch.monitor import Monitor

    class TreeMonitor(Monitor):
        """A ``Monitor`` that also keeps the statuses of its last walk, so the
        guard knows which live processes the test started."""

        def __init__(self, root: int) -> None:
            super().__init__(root)
            self.last: dict[int, str] = {}

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

    Zombies that existed before the test began are never the test's.
    """

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
        # Made by the first look that finds a child: most tests start none,
        # and for them a look is one system call, with no psutil, no
        # monitor and no read of /proc.
        self._monitor: _TreeMonitor | None = None
        self._last_look: _Look | None = None
        self._seen: set[int] = set()  # zombies at this guard's last look
        # pid -> the last look of this guard that did not see it as a zombie
        self._not_yet: dict[int, _Look] = {}
        self._look(started_by)
        self.baseline_zombies = frozenset(self._zombies())
        self.baseline_pids = frozenset(self._statuses())

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
        look = _Look(self._clock(), label)
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
        self._monitor.sample()
        # Compared with this guard's own last look, not the monitor's: the
        # monitor is shared, and a nested session (pytester) samples it too.
        for pid in self._monitor.zombies.keys() - self._seen:
            self._not_yet[pid] = previous
        self._seen = set(self._monitor.zombies)

    def _zombies(self) -> dict[int, Zombie]:
        return self._monitor.zombies if self._monitor is not None else {}

    def _statuses(self) -> dict[int, str]:
        return self._monitor.last if self._monitor is not None else {}

    def _new_pids(self) -> set[int]:
        return set(self._zombies()) - self.baseline_zombies

    def _running(self) -> set[int]:
        """Live processes that were not in the tree when the test began."""
        if self._monitor is None:
            return set()
        import psutil

        return {
            pid
            for pid, status in self._monitor.last.items()
            if status != psutil.STATUS_ZOMBIE and pid not in self.baseline_pids
        }

    def _leaked(self) -> list[LeakedZombie]:
        now = self._clock()
        found = []
        zombies = self._zombies()
        for pid in sorted(self._new_pids()):
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
                )
            )
        return found

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
        """
        settle = self.settle if settle is None else settle
        allow = self.allow if allow is None else allow
        labels = iter([label])

        def quiet() -> bool:
            # Most leaks are collected within milliseconds or not at all,
            # and the backoff's first looks come that fast.
            self._look(next(labels, "at the previous look of the settle window"))
            return len(self._new_pids()) <= allow and not self._running()

        poll_until(quiet, settle, clock=self._clock, sleep=self._sleep)
        return self._leaked()

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
        self, leaked: list[LeakedZombie], settle: float, allow: int, reaped: str = ""
    ) -> str:
        """Write the failure message: one entry per zombie, then advice."""
        noun = "zombie process" if len(leaked) == 1 else "zombie processes"
        lines = [
            f"zombiewatch: this test left {len(leaked)} {noun} (allowed: {allow}), "
            f"still there after a {settle:g} s settle window:"
        ]
        for zombie in leaked[:MAX_LISTED]:
            lines.extend(self._describe_one(zombie))
        if len(leaked) > MAX_LISTED:
            lines.append(f"  ... and {len(leaked) - MAX_LISTED} more")
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
        if zombie.running_at_start:
            lines.append(
                "    it was already running when this test began: an earlier test "
                "or a fixture started it, this test only saw it exit"
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
        import psutil

        try:
            return psutil.Process(pid).name()
        except psutil.Error:
            return "?"  # gone since the last look, or unreadable

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
