"""The built-in server's own account of each child, as ground truth.

With ``serve --record FILE`` (or ``--ground-truth`` on the default
command) the server appends one line per moment it knows first-hand: ``F``
when ``fork`` returned the child's pid in the parent, ``X`` in the child
just before ``os._exit``, ``R`` when a ``waitpid`` of any mode returned the
child. Each line is ``KIND PID MONOTONIC_NS``, written with one
``os.write`` to a file opened with O_APPEND, so the parent's and the
children's lines never interleave within a line.

``X`` and ``R`` lines add the child's time on a CPU and its time waiting
for one, in ns: ``X`` as the child read them (its thread's CPU clock, its
own ``/proc/self/schedstat``), ``R`` as the server read them from the
zombie's just before collecting it. What lies between is what the kernel spent
tearing the child down after its last line, before it became a zombie,
running or waiting for a CPU (docs/FACTS.md, "Kernel events"): the
record's zombie is born that much after the last line (``zombie_from``).
Where ``/proc`` cannot be read the CPU times come from ``getrusage`` and
``wait4`` instead, and the wait is unknown. The monitor's figures are then
checked against what the program itself did.

A child makes no system call between its ``X`` stamp and ``_exit``: it
leaves its line in a slot of memory it shares with the server, which
writes it out when it collects the child (or when it stops). Written by
the child, the line waited for the file's lock now and then, 0.5-13 ms
under a flood, and that wait looked like the monitor's error.

Imports only ``mmap``, ``os``, ``resource``, ``struct``, ``time`` and
``_stats`` (and ``zombiewatch._pump`` once a record is asked for): the
forking server loads this module.
"""

from __future__ import annotations

import mmap
import os
import resource
import struct
import time

from zombiewatch import _stats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# A child's times so far: (on a CPU, waiting for one) in ns, the wait None
# where only getrusage/wait4 could tell.
Times = tuple[int, int | None]


# A child's exit, left for the server: pid, X stamp, ns on a CPU, ns
# waiting for one (-1: unknown). One slot per pid modulo SLOTS; a slot
# names its pid, so a rare clash loses a line, never mixes two.
SLOT = struct.Struct("=qqqq")
SLOTS = 1 << 16


class Recorder:
    """Append the server's fork, exit and reap moments to ``path``."""

    _pid = 0  # in a child, its pid (note_start)

    def __init__(self, path: str) -> None:
        # Not O_CLOEXEC-sensitive: workers fork but never exec, and a
        # double fork's middle child writes its worker's F line through it.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Shared with every child forked after this (MAP_SHARED, anonymous).
        self.exits = mmap.mmap(-1, SLOT.size * SLOTS)

    def note(self, kind: bytes, pid: int) -> None:
        """Write one ``KIND PID NS`` line now."""
        os.write(self.fd, b"%s %d %d\n" % (kind, pid, time.monotonic_ns()))

    def note_start(self) -> None:
        """In a new child: claim its slot, which an earlier process with
        its pid may have left a line in, and touch it now rather than fault
        its page in after the ``X`` stamp."""
        self._pid = os.getpid()
        SLOT.pack_into(self.exits, self._pid % SLOTS * SLOT.size, self._pid, 0, 0, -1)

    def note_exit(self) -> None:
        """In a child about to ``_exit``: leave its ``X`` line, with its
        times so far, for the server; nothing but memory is touched after
        the stamp."""
        pid = self._pid or os.getpid()
        stat = _schedstat("self")  # waiting: final while this runs
        if stat is None:
            # As wait4 counts it at the reap: the child's, and its collected children's.
            on_cpu = _cpu_ns(resource.getrusage(resource.RUSAGE_SELF))
            on_cpu += _cpu_ns(resource.getrusage(resource.RUSAGE_CHILDREN))
        else:
            # On a CPU from the clock, which counts up to now; schedstat's
            # first figure is brought up to date only at the scheduler's
            # next look (a tick, a switch).
            on_cpu = time.thread_time_ns()
        now = time.monotonic_ns()
        waited = -1 if stat is None else stat[1]
        SLOT.pack_into(self.exits, pid % SLOTS * SLOT.size, pid, now, on_cpu, waited)

    def _exit_line(self, pid: int) -> bytes:
        """The ``X`` line ``pid`` left, taken out of its slot; b"" if none."""
        at = pid % SLOTS * SLOT.size
        owner, now, on_cpu, waited = SLOT.unpack_from(self.exits, at)
        if owner != pid or not now:
            return b""  # another pid's, or claimed by a child that has not ended
        SLOT.pack_into(self.exits, at, 0, 0, 0, 0)
        return b"X %d %d%s\n" % (pid, now, _fields((on_cpu, None if waited < 0 else waited)))

    def flush(self) -> None:
        """Write out the ``X`` lines of children the server never collected
        (a double fork's workers, those left when it stopped)."""
        lines = []
        for at in range(0, SLOTS * SLOT.size, SLOT.size):
            pid = SLOT.unpack_from(self.exits, at)[0]
            if pid:
                lines.append(self._exit_line(pid))
        if lines:
            os.write(self.fd, b"".join(lines))

    def wrap_waitpid(self) -> None:
        """Note every child a ``waitpid`` of this process returns.

        Every mode reaps through ``os.waitpid`` looked up when it runs, so
        wrapping it here sees each reap whatever the mode, without a hook
        in the modes' interface for an instrument. The reap itself is made
        by ``_reaper()``: without the GIL where it can be, so that the
        ``R`` stamp follows it within microseconds in every mode, and with
        the zombie's times read just before.
        """
        reap = _reaper()
        fd, exit_line = self.fd, self._exit_line

        def waitpid(pid: int, options: int) -> tuple[int, int]:
            got, status, times, stamp = reap(pid, options)
            if got > 0:
                os.write(fd, exit_line(got) + b"R %d %d%s\n" % (got, stamp, _fields(times)))
            return got, status

        os.waitpid = waitpid


def _fields(times: Times | None) -> bytes:
    if times is None:
        return b""
    if times[1] is None:
        return b" %d" % times[0]
    return b" %d %d" % (times[0], times[1])


def _cpu_ns(usage: resource.struct_rusage) -> int:
    return round((usage.ru_utime + usage.ru_stime) * 1e9)


def _schedstat(pid: int | str) -> Times | None:
    """(ns on a CPU, ns waiting for one) of a process's main thread so far,
    from ``/proc/PID/schedstat`` (a zombie's too), or None. The server's
    children have one thread."""
    try:
        fd = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
    except OSError:
        return None
    try:
        parts = os.read(fd, 128).split()
    except OSError:
        return None
    finally:
        os.close(fd)
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else None


def _wait4(pid: int, options: int) -> tuple[int, int, Times | None, int]:
    """``os.wait4``: the reap with the child's CPU time, stamped once this
    thread holds the GIL again."""
    got, status, usage = os.wait4(pid, options)
    return got, status, (_cpu_ns(usage), None) if got else None, time.monotonic_ns()


def _reaper() -> Callable[[int, int], tuple[int, int, Times | None, int]]:
    """Return a ``waitpid`` that gives, with the child it collected, the
    child's times and the moment it was collected.

    ``zombiewatch._pump.reap`` where the extension was built: it finds an
    exited child, reads its times, collects it and stamps the moment, all
    without the GIL, so that neither the reap nor its stamp waits for
    another thread (``_pump.c``; docs/FACTS.md, "The GIL and a reap's
    stamp"). Else, and for what it does not take (process groups, options
    other than WNOHANG, which no mode uses), ``os.wait4``: the reap at once,
    its stamp once the thread holds the GIL again.
    """
    try:
        from zombiewatch._pump import reap as native
    except ImportError:
        return _wait4

    def reap(pid: int, options: int) -> tuple[int, int, Times | None, int]:
        if pid == 0 or pid < -1 or options & ~os.WNOHANG:
            return _wait4(pid, options)
        got, status, on_cpu, waited, stamp = native(pid, options)
        if not got:
            return 0, 0, None, 0
        return got, status, (on_cpu, None if waited < 0 else waited), stamp

    return reap


def read(path: str) -> dict[int, dict[str, int]]:
    """Return ``{pid: {"F": ns, "X": ns, "R": ns, "Xcpu": ns, "Xwait": ns,
    "Rcpu": ns, "Rwait": ns}}`` from a record file (the times where the
    lines gave them)."""
    children: dict[int, dict[str, int]] = {}
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if 3 <= len(parts) <= 5:
                kind, pid = parts[0].decode(), int(parts[1])
                times = children.setdefault(pid, {})
                times[kind] = int(parts[2])
                for name, value in zip(("cpu", "wait"), parts[3:], strict=False):
                    times[kind + name] = int(value)
    return children


def zombie_from(times: dict[str, int]) -> int:
    """When the record says the child became a zombie: its last line, plus
    what the kernel then spent tearing it down, on a CPU and waiting for
    one, where both ends were recorded; never after its reap.

    Early by any time the teardown slept (it does not wait for I/O). Late
    by what the zombie ran and waited after it became one, before the
    kernel was done with it: a few µs of CPU, but its parent, woken by its
    death, can take the CPU from it, and under a flood it then waits
    milliseconds now and then (docs/FACTS.md, "Kernel events")."""
    born = times["X"]
    for name in ("cpu", "wait"):
        if "X" + name in times and "R" + name in times:
            born += max(0, times["R" + name] - times["X" + name])
    return min(born, times.get("R", born))


def _summary_us(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": None if not ordered else round(_stats.percentile(ordered, 50) or 0.0, 1),
        "p99": None if not ordered else round(_stats.percentile(ordered, 99) or 0.0, 1),
        "max": None if not ordered else round(ordered[-1], 1),
    }


def compare(
    truth: dict[int, dict[str, int]], observed: dict[int, list[tuple[int, int, bool]]] | None
) -> dict[str, object]:
    """Set the server's record beside what the monitor observed.

    ``observed`` is the event monitor's ``{pid: [(exit_ns, reap_ns, exact)]}``
    (None when the run sampled: only the record's own figures are given).
    A child is *missed* when the server forked it and the monitor never saw
    it at all; *untimed* when the monitor saw it but the watch ended before
    its reap. The record's zombie lifetimes run from ``zombie_from`` (the
    child's last line plus its teardown) to the reap. For each child
    timed exactly: ``error_us`` is |observed lifetime - recorded lifetime|;
    ``error_from_last_line_us`` the same with the record's lifetime taken
    from the child's last line; ``exit_after_x_us`` is the kernel's exit
    event after the child's last line (the teardown of an exiting process,
    which is part of its life, not yet a zombie's), ``teardown_us`` what
    that teardown took by the child's times, ``exit_after_teardown_us`` the
    exit event after the last line and the teardown, and
    ``reap_error_us`` |the monitor's wake-up at the reap - the server's
    ``waitpid`` return| (either side may be descheduled for a moment).
    """
    complete = {pid: t for pid, t in truth.items() if {"F", "X", "R"} <= t.keys()}
    result: dict[str, object] = {
        "children": sum(1 for t in truth.values() if "F" in t),
        "complete": len(complete),
        "lifetime_us": _summary_us((t["R"] - zombie_from(t)) / 1000 for t in complete.values()),
    }
    if observed is None:
        return result
    forked = [pid for pid, t in truth.items() if "F" in t]
    missed = [pid for pid in forked if pid not in observed]
    errors, raw_errors, exits, teardowns, late, reaps = [], [], [], [], [], []
    unwatched = untimed = 0
    for pid, t in complete.items():
        if not observed.get(pid, [True]):
            untimed += 1
        born = zombie_from(t)
        for exit_ns, reap_ns, exact in observed.get(pid, ()):
            if not exact:
                unwatched += 1
                continue
            errors.append(abs((reap_ns - exit_ns) - (t["R"] - born)) / 1000)
            raw_errors.append(abs((reap_ns - exit_ns) - (t["R"] - t["X"])) / 1000)
            exits.append((exit_ns - t["X"]) / 1000)
            teardowns.append((born - t["X"]) / 1000)
            late.append((exit_ns - born) / 1000)
            reaps.append(abs(reap_ns - t["R"]) / 1000)
    result.update(
        observed=len(forked) - len(missed),
        missed=len(missed),
        exact=len(errors),
        unwatched=unwatched,
        untimed=untimed,
        error_us=_summary_us(errors),
        error_from_last_line_us=_summary_us(raw_errors),
        exit_after_x_us=_summary_us(exits),
        teardown_us=_summary_us(teardowns),
        exit_after_teardown_us=_summary_us(late),
        reap_error_us=_summary_us(reaps),
    )
    return result
