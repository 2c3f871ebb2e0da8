"""Where the event monitor's records come from: the connector's events and
the pidfds' HUPs (the reaps), in the order seen.

Two feeds give the same records. The native one (``zombiewatch._pump``, a
C extension built at install where a compiler is found) takes the
wake-ups on a thread of its own that holds no GIL: it opens each new
child's pidfd the moment its fork event is read and stamps each reap when
epoll returns it, so the Python monitor wakes once per tick, not twice
per child (docs/BENCHMARKS.md, "Kernel events against sampling"). The
Python one does the same from the monitor's own thread; it serves where
the extension was not built, and with a scripted connector in tests.
``ZOMBIEWATCH_NATIVE=0`` chooses it.

A record is ``(what, timestamp_ns, a, b, c, d, e, f)``:

- ``_cnproc.FORK``: parent pid, parent tgid, child pid, child tgid, and
  the watch the native feed opened for the child (0: it did not try; -1:
  it tried, and the child was reaped already or no descriptor was left);
- ``_cnproc.EXIT``: pid, tgid, exit code, exit signal, parent pid, tgid;
- ``HUP``: pid, watch; the time is the wake-up that saw the reap. The
  watch ends with it (the feed closes its pidfd).

A watch names one pidfd: a pid names a new process after a reap, a watch
never does, so a HUP can be matched to the process it is of. Each round's
events come before its HUPs: a parent's exit must be known before its
adopter's reaps of the zombies it left (docs/DESIGN.md, "Handed-off
zombies").
"""

from __future__ import annotations

import os
import select
import signal
import time
import types
from typing import Protocol

from zombiewatch import _cnproc

HUP = 0x40000000  # as in _pump.c

Record = tuple[int, int, int, int, int, int, int, int]

_pump: types.ModuleType | None
try:
    from zombiewatch import _pump
except ImportError:  # not built here: no compiler at install, or another platform
    _pump = None


class Feed(Protocol):
    native: bool

    @property
    def lost(self) -> int: ...

    def take(self, timeout: float) -> list[Record]: ...

    def watch(self, pid: int) -> int: ...

    def fd(self, pid: int, watch: int) -> int: ...

    def uncollected(self, pid: int, watch: int) -> bool: ...

    def forget(self, pid: int, watch: int) -> None: ...

    def close(self) -> None: ...


def native_reason() -> str | None:
    """Say why the native feed is not used here, or None where it is."""
    if os.environ.get("ZOMBIEWATCH_NATIVE", "1") == "0":
        return "ZOMBIEWATCH_NATIVE=0"
    if _pump is None:
        return "zombiewatch._pump was not built at install (no C compiler?)"
    return None


def open_feed(conn: _cnproc.Connector, root: int) -> Feed:
    """The native feed where it was built, else Python's. The native one
    reads the connector's datagrams itself: from a ``Connector``, or a
    stand-in that says it delivers them (``datagrams``)."""
    if getattr(conn, "datagrams", False) and native_reason() is None:
        return NativeFeed(conn, root)
    return PythonFeed(conn)


class NativeFeed:
    """The records of ``zombiewatch._pump``'s thread; ``take`` does not
    wait (the caller sleeps between ticks) and first looks at what the
    thread has not woken for yet, so a take is as fresh as a poll."""

    native = True
    threaded = True  # False: read only when taken from (a test forcing an overrun)

    def __init__(self, conn: _cnproc.Connector, root: int) -> None:
        assert _pump is not None
        exit_fileno = getattr(conn, "exit_fileno", None)
        exits = exit_fileno() if exit_fileno is not None else -1
        self._pump = _pump.Pump(conn.fileno(), root, exits, thread=self.threaded)

    @property
    def lost(self) -> int:
        return int(self._pump.lost)

    @property
    def wakeups(self) -> int:
        return int(self._pump.wakeups)

    def take(self, timeout: float) -> list[Record]:
        records: list[Record] = self._pump.take()
        return records

    def watch(self, pid: int) -> int:
        return int(self._pump.watch(pid))

    def fd(self, pid: int, watch: int) -> int:
        return int(self._pump.fd(pid, watch))

    def uncollected(self, pid: int, watch: int) -> bool:
        # In C, under the pump's lock: its thread may close the pidfd at
        # its HUP, and give the number to a new child, at any moment.
        return bool(self._pump.uncollected(pid, watch))

    def forget(self, pid: int, watch: int) -> None:
        self._pump.forget(pid, watch)

    def close(self) -> None:
        self._pump.close()


class PythonFeed:
    """The same records, read by the caller's thread: ``take`` waits up to
    ``timeout`` in epoll for the connector or a HUP."""

    native = False

    def __init__(self, conn: _cnproc.Connector) -> None:
        self._conn = conn
        self._epoll = select.epoll()
        self._epoll.register(conn.fileno(), select.EPOLLIN)
        self._by_fd: dict[int, tuple[int, int]] = {}  # fd -> (pid, watch)
        self._fds: dict[int, int] = {}  # watch -> fd
        self._next = 0
        self.wakeups = 0

    @property
    def lost(self) -> int:
        return self._conn.lost

    def take(self, timeout: float) -> list[Record]:
        ready = self._epoll.poll(timeout)
        now_ns = time.monotonic_ns()
        self.wakeups += 1
        # Matched to their watches before the events are handled (handling
        # them may close a pidfd and open another with its number), and
        # ended: a HUP is all a watch can tell.
        hups: list[Record] = []
        for fd, _events in ready:
            watched = self._by_fd.get(fd)
            if watched is not None:
                hups.append((HUP, now_ns, *watched, 0, 0, 0, 0))
                self.forget(*watched)
        records: list[Record] = []
        conn = self._conn
        while True:
            records += conn.read()
            if not conn.pending:
                break
        return records + hups

    def watch(self, pid: int) -> int:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            # ESRCH: reaped already, its exit event is all there is; EMFILE:
            # out of descriptors. Either way unwatched, with a bound.
            return 0
        self._next += 1
        self._by_fd[fd] = (pid, self._next)
        self._fds[self._next] = fd
        # No event bits: epoll reports HUP (the reap) whatever is asked,
        # and POLLIN at exit would be a wake-up per child for nothing.
        self._epoll.register(fd, 0)
        return self._next

    def fd(self, pid: int, watch: int) -> int:
        return self._fds.get(watch, -1)

    def uncollected(self, pid: int, watch: int) -> bool:
        """True if the watch's process exited (its pidfd is readable) and
        was not collected (signal 0 through it is not ESRCH)."""
        fd = self._fds.get(watch, -1)
        if fd < 0:
            return False  # ended with its HUP: collected
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(0):
            return False  # running
        try:
            signal.pidfd_send_signal(fd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's: it exists all the same
        return True

    def forget(self, pid: int, watch: int) -> None:
        fd = self._fds.pop(watch, None)
        if fd is not None:
            del self._by_fd[fd]
            os.close(fd)  # closing unregisters it from epoll

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._by_fd.clear()
        self._epoll.close()
