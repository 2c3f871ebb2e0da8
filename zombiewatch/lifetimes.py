"""Every zombie of the machine from kernel events: when each process exited
and when its parent collected it (Linux; root or CAP_NET_ADMIN before 6.6,
any user since: docs/FACTS.md, Prometheus).

``zombiewatch export`` counts zombies created and collected and the
lifetime of each from here. A process becomes a zombie when its last
thread exits: the connector (``_cnproc``) reports that exit with the
kernel's CLOCK_MONOTONIC timestamp. Its end is the reap: a pidfd held by
an outsider reports HUP when the parent collects the child (docs/FACTS.md,
"Kernel events"). Unlike ``events.EventMonitor``, which follows one tree
from its forks, this watches the whole machine and only its exits: a pidfd
is opened at the exit event, so one is held per zombie, not per process.

A process its parent collected before the exit event was handled (most,
on a host whose parents reap at once) cannot be watched: ``pidfd_open``
fails with ESRCH. Its lifetime is counted at its upper bound, the time
the exit event was handled, usually within milliseconds. A process that
cannot be watched for want of descriptors (EMFILE) is remembered by pid
and counted collected, with the same kind of bound, at the first scan
that no longer finds it a zombie (``reconcile``). Events the kernel
dropped (ENOBUFS: the socket buffer was full) are exits never counted:
``lost`` says how often that happened.
"""

from __future__ import annotations

import bisect
import os
import select
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from zombiewatch import _cnproc

_NS = 1e-9

# Upper bounds of the lifetime histogram, in seconds. A parent that reaps
# in a SIGCHLD handler collects within a millisecond or so; a leak shows
# in the last buckets, and as zombies that are never collected at all.
BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0)


@dataclass
class Counts:
    """What the events said since the watch began, as one consistent copy."""

    created: int = 0  # processes that exited: each was a zombie until collected
    collected: int = 0
    unwatched: int = 0  # collected before a pidfd could be opened: lifetime is a bound
    lost: int = 0  # times the kernel dropped events (each any number of exits)
    watching: int = 0  # zombies with a pidfd open now
    # Non-cumulative counts per bucket of BUCKETS, then the overflow (+Inf).
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    lifetime_sum: float = 0.0


class _Zombie:
    __slots__ = ("exit_ns", "fd", "pid")

    def __init__(self, pid: int, exit_ns: int, fd: int) -> None:
        self.pid = pid
        self.exit_ns = exit_ns
        self.fd = fd


class ExitWatcher:
    """Count every process exit of the machine and time each one's reap,
    in a background thread. ``counts()`` reads the totals.

    Raises ``_cnproc.ConnectorError`` where events cannot be had; the
    caller falls back to scans alone.
    """

    method = "events"

    def __init__(self, connector: _cnproc.Connector | None = None) -> None:
        # Exits only: on 6.6+ the kernel drops forks and execs before they
        # reach the socket; on older kernels read() leaves execs out and
        # _drain ignores forks.
        self._conn = connector if connector is not None else _cnproc.Connector(wanted=_cnproc.EXIT)
        self._epoll = select.epoll()
        self._epoll.register(self._conn.fileno(), select.EPOLLIN)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._by_fd: dict[int, _Zombie] = {}
        self._by_pid: dict[int, _Zombie] = {}
        self._untracked: dict[int, int] = {}  # pid -> exit_ns, for want of descriptors
        self._counts = Counts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="zombiewatch-exits", daemon=True)
        self._thread.start()

    def counts(self) -> Counts:
        """A copy of the totals so far."""
        with self._lock:
            c = self._counts
            return Counts(
                created=c.created,
                collected=c.collected,
                unwatched=c.unwatched,
                lost=self._conn.lost,
                watching=len(self._by_fd),
                buckets=list(c.buckets),
                lifetime_sum=c.lifetime_sum,
            )

    # -- events ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll(None)

    def poll(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: until something comes) and
        handle what came. The thread calls this; tests may call it directly."""
        try:
            ready = self._epoll.poll(-1 if timeout is None else timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            return
        now_ns = time.monotonic_ns()
        conn = self._conn.fileno()
        with self._lock:
            # Reaps before new exits: no pidfd is opened before every HUP in
            # ``ready`` is handled, so none is read for a reused number.
            for fd, _mask in ready:
                if fd != conn and fd != self._wake_r:
                    self._reaped(fd, now_ns)
            self._drain()

    def _drain(self) -> None:
        conn = self._conn
        while True:
            # exit: pid, tgid, code, signal, parent pid, tgid (see _cnproc).
            for what, ts, pid, tgid, _c, _d, _e, _f in conn.read():
                if what != _cnproc.EXIT:
                    continue  # a fork, on a kernel that cannot filter
                if pid == tgid:
                    self._exited(pid, ts)
                else:
                    # A thread ended; if its leader already exited, the
                    # process became a zombie only now, when its last thread went.
                    zombie = self._by_pid.get(tgid)
                    if zombie is not None:
                        zombie.exit_ns = max(zombie.exit_ns, ts)
            if not conn.pending:
                break

    def _exited(self, pid: int, ts: int) -> None:
        counts = self._counts
        counts.created += 1
        old = self._by_pid.pop(pid, None)
        if old is not None:
            # The number came back, so the process that had it was collected
            # first: its HUP is still queued. Closed with that bound.
            self._forget(old)
            self._observe(ts - old.exit_ns, exact=False)
        elif pid in self._untracked:
            self._observe(ts - self._untracked.pop(pid), exact=False)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Collected before we looked: it lived at most until now (read
            # now: this drain may have read events that came after the wake-up).
            self._observe(time.monotonic_ns() - ts, exact=False)
            return
        except OSError:
            # Out of descriptors (EMFILE, ENFILE): the next scans tell when it goes.
            self._untracked[pid] = ts
            return
        zombie = _Zombie(pid, ts, fd)
        self._by_fd[fd] = zombie
        self._by_pid[pid] = zombie
        # No event bits: epoll reports HUP (the reap) whatever is asked, and
        # POLLIN (exited) is already true and would wake us for nothing.
        self._epoll.register(fd, 0)

    def _reaped(self, fd: int, now_ns: int) -> None:
        zombie = self._by_fd.get(fd)
        if zombie is None:
            return
        self._forget(zombie)
        del self._by_pid[zombie.pid]
        self._observe(now_ns - zombie.exit_ns, exact=True)

    def _forget(self, zombie: _Zombie) -> None:
        del self._by_fd[zombie.fd]
        os.close(zombie.fd)  # closing unregisters it from epoll

    def _observe(self, lifetime_ns: int, exact: bool) -> None:
        counts = self._counts
        seconds = max(0, lifetime_ns) * _NS
        counts.collected += 1
        if not exact:
            counts.unwatched += 1
        counts.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts.lifetime_sum += seconds

    def reconcile(self, zombie_pids: Iterable[int]) -> None:
        """Count as collected the unwatched zombies a scan no longer finds.

        ``zombie_pids`` are every zombie of the machine, from a scan that
        has just run.
        """
        if not self._untracked:
            return
        still = set(zombie_pids)
        now_ns = time.monotonic_ns()
        with self._lock:
            for pid in [p for p in self._untracked if p not in still]:
                self._observe(now_ns - self._untracked.pop(pid), exact=False)

    def close(self) -> None:
        """Stop the thread and release the connector and every pidfd. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for zombie in list(self._by_fd.values()):
                self._forget(zombie)
            self._by_pid.clear()
            self._epoll.close()
            self._conn.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


def open_watcher() -> tuple[ExitWatcher | None, str | None]:
    """Return a started watcher, or None and the reason events cannot be had."""
    if not hasattr(os, "pidfd_open"):
        return None, "timing reaps needs pidfd_open (Linux 5.3+)"
    from zombiewatch import _platform

    if not _platform.can_use_pidfd():
        return None, _platform.pidfd_unavailable_reason()
    try:
        watcher = ExitWatcher()
    except _cnproc.ConnectorError as err:
        return None, err.strerror or str(err)
    watcher.start()
    return watcher, None
