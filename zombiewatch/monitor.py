"""Sample a process tree for zombies: counts, lifetimes, leaks.

Scope: the root process and all its descendants, plus the processes of the
root's session that an *adopter* (a child subreaper such as the runner, or
PID 1) holds, so double-forked grandchildren stay in view after they are
reparented. Each sample walks the tree through ``/proc/PID/task/*/children``
(O(tree), not O(host)) and reads each process's state through psutil.

A zombie's lifetime runs from the first sample that saw it in state Z to
the first sample that no longer does; lifetimes are therefore quantised by
the sampling interval, which is reported with them.

The monitor only reads. It never forks and never reaps. Processes that
vanish between two reads are normal; a process it may not read is an
error (``AccessDeniedError``), never a silent undercount.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from zombiewatch import _platform, _stats
from zombiewatch.errors import AccessDeniedError, ZombiewatchError

# Timeline points kept for plots and growth rates: an hour at 10 ms. The
# aggregates (peak, lifetimes) are updated online and are not bounded by it.
MAX_TIMELINE = 360_000


@dataclass(frozen=True)
class Sample:
    """One look at the tree: when, live children, zombies."""

    t: float
    live: int
    zombies: int


@dataclass(frozen=True)
class Zombie:
    """A zombie as first seen: who it was and who held it."""

    pid: int
    ppid: int
    name: str
    since: float

    def age(self, now: float) -> float:
        """Seconds since the first sample that saw it in state Z."""
        return now - self.since


@dataclass
class MonitorStats:
    """Everything the monitor learned, for the report."""

    samples: int = 0
    interval: float = 0.0
    sample_time: float = 0.0  # seconds spent sampling, all samples together
    peak_zombies: int = 0
    max_live_children: int = 0
    zombies_seen: int = 0
    lifetimes: list[float] = field(default_factory=list)
    timeline: collections.deque[Sample] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_TIMELINE)
    )

    def lifetime_ms(self) -> dict[str, float | None]:
        """p50, p99, max of completed zombie lifetimes, in ms."""
        return _stats.summary_ms(self.lifetimes)


class Monitor:
    """Watch ``root``'s tree and keep zombie statistics.

    Call ``sample()`` yourself, or ``start()`` a sampling thread and
    ``stop()`` it. ``zombies`` holds the zombies present at the last sample.
    """

    def __init__(self, root: int, adopters: Iterable[int] = (), interval: float = 0.01) -> None:
        self.root = root
        self.interval = interval
        self.adopters = tuple(adopters)
        sid = _platform.session_of(root)
        if sid is None:
            raise ZombiewatchError(f"process {root} does not exist")
        self.sid = sid
        self.stats = MonitorStats(interval=interval)
        self.zombies: dict[int, Zombie] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # -- reading processes ----------------------------------------------------

    def _status(self, pid: int) -> str | None:
        """Return ``pid``'s status, or None if it is gone."""
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            return proc.status()
        except psutil.NoSuchProcess:  # includes ZombieProcess: it exited and went
            self._procs.pop(pid, None)
            return None
        except psutil.AccessDenied as err:
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err

    def _adopted(self) -> list[int]:
        """Processes of the root's session that an adopter now holds."""
        found = []
        for adopter in self.adopters:
            for pid in _platform.read_children(adopter):
                if pid != self.root and _platform.session_of(pid) == self.sid:
                    found.append(pid)
        return found

    def walk(self) -> tuple[dict[int, str], set[int]]:
        """Return the watched tree's {pid: status} and the pids listed.

        The root itself is not in the result: only its descendants and the
        adopted processes of its session are.
        """
        statuses: dict[int, str] = {}
        stack = [self.root, *self._adopted()]
        listed = set(stack)
        while stack:
            pid = stack.pop()
            if pid != self.root:
                status = self._status(pid)
                if status is None:
                    continue
                statuses[pid] = status
                if status == psutil.STATUS_ZOMBIE:
                    continue  # a zombie has no children: they were reparented
            for child in _platform.read_children(pid):
                if child not in listed:
                    listed.add(child)
                    stack.append(child)
        return statuses, listed

    # -- sampling ------------------------------------------------------------

    def sample(self) -> Sample:
        """Take one sample and update the statistics."""
        with self._lock:
            return self._sample()

    def _sample(self) -> Sample:
        started = time.monotonic()
        statuses, listed = self.walk()
        now = time.monotonic()
        current = {pid for pid, st in statuses.items() if st == psutil.STATUS_ZOMBIE}
        for pid in self.zombies.keys() - current:
            # A children file can hide entries while a neighbour exits during
            # the read (proc(5)). A known zombie missing from every list is
            # checked directly before its lifetime is closed, so churn never
            # ends a lifetime early or counts one zombie twice.
            if pid not in listed and self._status(pid) == psutil.STATUS_ZOMBIE:
                current.add(pid)
            else:
                zombie = self.zombies.pop(pid)
                self.stats.lifetimes.append(now - zombie.since)
        new = current - self.zombies.keys()
        for pid in new:
            self.zombies[pid] = self._describe(pid, now)
        stats = self.stats
        stats.zombies_seen += len(new)
        live = len(statuses) - len(current & statuses.keys())
        stats.samples += 1
        stats.peak_zombies = max(stats.peak_zombies, len(current))
        stats.max_live_children = max(stats.max_live_children, live)
        point = Sample(now, live, len(current))
        stats.timeline.append(point)
        for pid in [p for p in self._procs if p not in statuses]:
            del self._procs[pid]  # forget the dead, so reused pids read fresh
        stats.sample_time += time.monotonic() - started
        return point

    def _describe(self, pid: int, now: float) -> Zombie:
        proc = self._procs.get(pid)
        ppid, name = 0, "?"
        if proc is not None:
            try:
                ppid, name = proc.ppid(), proc.name()
            except psutil.NoSuchProcess:
                pass  # collected between the two reads; still seen in Z once
        return Zombie(pid=pid, ppid=ppid, name=name, since=now)

    # -- background sampling -----------------------------------------------

    def start(self) -> None:
        """Sample every ``interval`` seconds in a thread until ``stop()``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="zombiewatch-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self.sample()
                next_at += self.interval
                # A slow sample (a huge tree) pushes the schedule back
                # instead of firing a burst of catch-up samples.
                next_at = max(next_at, time.monotonic())
                self._stop.wait(next_at - time.monotonic())
        except BaseException as err:  # handed to stop(), which re-raises it
            self._error = err

    def stop(self) -> None:
        """Stop the sampling thread; re-raise what it failed with, if anything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
