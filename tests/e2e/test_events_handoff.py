"""What the event monitor reads in an order other than the processes' own.
A parent's exit and its adopter's reaps of the zombies it left, in one
wake-up or in either order: the reaps are the adopter's (a handoff) only
when the adopter says so (``OrphanCollector.collecting``). And an orphan
the walk finds under PID 1 before its parent's events: an escape all the
same. Scripted connector events; the processes are real, so their
pidfds' HUPs are."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import call_until
from tests.scripted import NOBODY, ScriptedConnector
from zombiewatch import _procfs, observe
from zombiewatch._backoff import poll_until
from zombiewatch.events import EventMonitor
from zombiewatch.targets import child_exited

pytestmark = pytest.mark.skipif(
    observe.events_unavailable_reason() is not None, reason="no pidfds or /proc here"
)

ROOT = os.getpid()


def _zombie_child() -> int:
    """A real child of this process that has exited, not yet collected: its
    pidfd reports HUP when this process collects it."""
    pid = os.posix_spawn("/bin/true", ["true"], os.environ)
    assert poll_until(lambda: child_exited(pid), 10.0)
    return pid


@pytest.fixture
def handoff(feed):
    """A creator (no such process) with a real zombie child, ``zombie``,
    known to the monitor; the monitor listens to the adopter's notes."""
    conn = ScriptedConnector()
    monitor = EventMonitor(ROOT, adopters=[ROOT], connector=conn)  # type: ignore[arg-type]
    monitor.adopter_reaps = {}
    creator, zombie = NOBODY, _zombie_child()
    try:
        exited = time.monotonic_ns()
        conn.fork(exited - 2_000, ROOT, creator)
        conn.fork(exited - 1_000, creator, zombie)
        conn.exit(exited, zombie, creator)
        monitor.sample()
        assert monitor.zombies[zombie].ppid == creator
        yield conn, monitor, creator, zombie
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(zombie, 0)
        monitor.close()


def _reap(monitor: EventMonitor, pid: int, by_adopter: bool) -> None:
    if by_adopter:  # as OrphanCollector.collect does: noted, then reaped
        assert monitor.adopter_reaps is not None
        monitor.adopter_reaps[pid] = time.monotonic_ns()
    os.waitpid(pid, 0)


@pytest.mark.parametrize("by_adopter", [True, False], ids=["adopter", "creator"])
def test_a_reap_read_with_the_creators_exit_is_credited_to_whoever_says_it(
    handoff, by_adopter: bool
) -> None:
    # The creator's exit event and the HUP of the reap are read together.
    # The adopter's reap must not be credited to the creator; one the
    # creator made just before it exited (no note) is its own.
    conn, monitor, creator, zombie = handoff
    _reap(monitor, zombie, by_adopter)
    conn.exit(time.monotonic_ns(), creator, ROOT)
    monitor.sample()
    parent = monitor.stats.parents[creator]
    assert (parent.handed_off, parent.reaped) == ((1, 0) if by_adopter else (0, 1))
    assert [z.pid for z in monitor.handed_off] == ([zombie] if by_adopter else [])
    assert not monitor.zombies


def test_an_adopters_reap_seen_before_the_creators_exit_event_is_a_handoff(handoff) -> None:
    # The adopter may collect between the kernel's reparenting and the
    # creator's exit event: the reap is read first, the exit after.
    conn, monitor, creator, zombie = handoff
    _reap(monitor, zombie, by_adopter=True)
    monitor.sample()
    conn.exit(time.monotonic_ns(), creator, ROOT)
    monitor.sample()
    parent = monitor.stats.parents[creator]
    assert (parent.handed_off, parent.reaped) == (1, 0)
    assert [z.pid for z in monitor.handed_off] == [zombie]


def test_a_note_older_than_the_zombie_is_of_an_earlier_process(handoff) -> None:
    # Pids are reused: a note taken before this zombie existed is not its.
    conn, monitor, creator, zombie = handoff
    assert monitor.adopter_reaps is not None
    monitor.adopter_reaps[zombie] = 0
    os.waitpid(zombie, 0)
    conn.exit(time.monotonic_ns(), creator, ROOT)
    monitor.sample()
    assert monitor.stats.parents[creator].reaped == 1
    assert monitor.handed_off == []


def test_an_orphan_the_walk_finds_before_its_parents_events_is_an_escape(feed) -> None:
    # A watcher descheduled between reading the connector and walking /proc
    # finds an orphan already under PID 1 before the events say how it got
    # there. No event is given here at all: the walk alone must count it.
    leader = subprocess.Popen(["sh", "-c", "(sleep 30 &); exec sleep 30"], start_new_session=True)
    monitor = None
    try:

        def orphan() -> int | None:
            for pid in _procfs.read_children(1):
                if os.getsid(pid) == leader.pid and pid != leader.pid:
                    return pid
            return None

        pid = call_until(orphan, what="the orphan under PID 1")
        monitor = EventMonitor(leader.pid, adopters=[1], connector=ScriptedConnector())  # type: ignore[arg-type]
        assert monitor.stats.escaped == {1: 1}
        assert monitor.stats.orphaned_by == {(0, False): 1}
        monitor.sample()  # found again: not counted twice
        assert monitor.stats.escaped == {1: 1}
        os.kill(pid, signal.SIGKILL)
    finally:
        if monitor is not None:
            monitor.close()
        leader.kill()
        leader.wait()


def test_a_fork_event_read_after_its_childs_exit_is_not_a_new_process(feed) -> None:
    # The kernel sends a fork event after the child runs: a parent held off
    # the CPU sends it late, after a walk has found the child and after the
    # child's own exit event. That zombie is still there (its pidfd says
    # so): its pid was not reused, so it was not collected, and it is one
    # zombie, seen once. (It read "22 seen, 2 reaped by it" for a server
    # that never reaps and served 20 clients, on a busy machine.)
    pid = os.posix_spawn("/bin/sleep", ["sleep", "30"], os.environ)
    monitor = None
    try:
        monitor = EventMonitor(ROOT, adopters=[], connector=(conn := ScriptedConnector()))  # type: ignore[arg-type]
        os.kill(pid, signal.SIGKILL)
        assert poll_until(lambda: child_exited(pid), 10.0)
        conn.exit(time.monotonic_ns(), pid, ROOT)
        monitor.sample()
        conn.fork(time.monotonic_ns(), ROOT, pid)  # late, and stamped late
        monitor.sample()
        assert pid in monitor.zombies
        assert monitor.stats.zombies_seen == 1
        assert monitor.stats.parents[ROOT].reaped == 0
        os.waitpid(pid, 0)
        assert poll_until(lambda: (monitor.sample(), pid not in monitor.zombies)[1], 10.0)
        assert (monitor.stats.zombies_seen, monitor.stats.parents[ROOT].reaped) == (1, 1)
    finally:
        if monitor is not None:
            monitor.close()
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_child_a_walk_finds_before_its_fork_event_keeps_its_exact_exit(feed) -> None:
    # Its parent's fork event is late (sent after the child ran, and here
    # exited), so the child's exit event is kept as a stranger's. A walk
    # that finds the zombie first gives it that exit: exact, not "a zombie
    # before the watch" timed from the walk. (A burst of 200 read one such
    # child as before_watch on a busy machine.)
    monitor = EventMonitor(ROOT, adopters=[], connector=(conn := ScriptedConnector()))  # type: ignore[arg-type]
    pid = _zombie_child()
    try:
        exited = time.monotonic_ns() - 1_000_000
        conn.exit(exited, pid, ROOT)
        monitor.sample()  # the exit is kept; the empty tree is walked
        zombie = monitor.zombies[pid]
        assert zombie.exact
        assert zombie.since == pytest.approx(exited * 1e-9)
        assert monitor.stats.before_watch == 0
        conn.fork(time.monotonic_ns(), ROOT, pid)  # late: its own, not a new process
        monitor.sample()
        os.waitpid(pid, 0)
        assert poll_until(lambda: (monitor.sample(), pid not in monitor.zombies)[1], 10.0)
        assert (monitor.stats.zombies_seen, monitor.stats.lifetimes_closed) == (1, 1)
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        monitor.close()
