"""The event monitor fed scripted connector events (no forking): events that
arrive in an order other than the processes' own. A parent's fork event is
sent after its child starts running, so on another CPU the child's own
fork or exit can come first; the monitor must still count that child."""

from __future__ import annotations

import os
import types

import pytest

from tests.scripted import NOBODY, ScriptedConnector
from zombiewatch import _procfs, observe
from zombiewatch.events import EARLY_WINDOW_NS, EventMonitor

pytestmark = pytest.mark.skipif(
    observe.events_unavailable_reason() is not None, reason="no pidfds or /proc here"
)

ROOT = os.getpid()


@pytest.fixture
def fed(feed):
    conn = ScriptedConnector()
    monitor = EventMonitor(ROOT, connector=conn)  # type: ignore[arg-type]
    yield conn, monitor
    monitor.close()


def test_a_childs_exit_before_its_fork_event_still_counts(fed) -> None:
    conn, monitor = fed
    child = NOBODY
    conn.exit(2_000, child, ROOT)  # its exit came first...
    conn.fork(2_500, ROOT, child)  # ...stamped before its parent's fork event
    point = monitor.sample()
    assert monitor.stats.zombies_seen == 1
    assert monitor.stats.unwatched == 1  # reaped before it could be watched
    assert (point.live, point.zombies) == (0, 0)


def test_a_grandchild_forked_before_its_parents_fork_event_joins_the_tree(fed) -> None:
    conn, monitor = fed
    child, grandchild = NOBODY, NOBODY + 1
    conn.fork(1_000, child, grandchild)  # the child forks before...
    conn.fork(1_200, ROOT, child)  # ...its own fork event is sent
    point = monitor.sample()
    assert point.live == 2
    assert monitor.stats.max_live_children == 2


def test_an_earlier_processs_events_are_not_given_to_a_new_one(fed) -> None:
    conn, monitor = fed
    child = NOBODY
    conn.exit(1_000, child, 1)  # some process that had this pid long ago
    conn.fork(1_000 + 2 * EARLY_WINDOW_NS, ROOT, child)
    point = monitor.sample()
    assert monitor.stats.zombies_seen == 0
    assert point.live == 1  # alive, as far as anyone told


def test_an_earlier_processs_exit_within_the_window_is_not_the_new_childs(fed) -> None:
    # A pid can come back within milliseconds: the exit of a process that
    # had it (another parent's child, killed) is kept, then the tree's child
    # gets the pid. That exit names a parent the child never had.
    conn, monitor = fed
    child, stranger = NOBODY, NOBODY + 1
    conn.exit(1_000, child, stranger)  # the earlier process, a child of another
    conn.fork(1_500, ROOT, child)  # ...4 ms later in the real case: ours
    point = monitor.sample()
    assert point.live == 1  # alive: its own exit has not come
    conn.exit(2_000, child, ROOT)
    monitor.sample()
    assert monitor.stats.zombies_seen == 1
    assert monitor.stats.parents[ROOT].zombies_seen == 1


def test_an_exit_that_names_parent_0_is_held_by_the_child_s_forker(fed) -> None:
    # The kernel says parent 0 now and then for a child reaped at once;
    # the child stays the tree's, not a process out of scope.
    conn, monitor = fed
    child = NOBODY
    conn.fork(1_000, ROOT, child)
    conn.exit(2_000, child, 0)
    monitor.sample()
    assert monitor.stats.zombies_seen == 1
    assert monitor.stats.parents[ROOT].zombies_seen == 1


def test_root_as_pid1_counts_the_orphans_handed_to_it(monkeypatch, feed) -> None:
    # run --pid1: the root is PID 1 of a namespace and the adopter of its
    # own tree. A double fork's orphan is handed to it (counted, adopted);
    # its own child is not adopted.
    own, middle, orphan = NOBODY, NOBODY + 1, NOBODY + 2
    reparented = types.SimpleNamespace(ppid=ROOT, comm="daemon")
    monkeypatch.setattr(_procfs, "read_stat", lambda pid: reparented if pid == orphan else None)
    conn = ScriptedConnector()
    monitor = EventMonitor(ROOT, adopters=[ROOT], connector=conn)  # type: ignore[arg-type]
    try:
        conn.fork(1_000, ROOT, own)
        conn.fork(1_100, ROOT, middle)
        conn.fork(1_200, middle, orphan)
        conn.exit(1_300, middle, ROOT)  # the middle exits: its child goes to PID 1
        conn.exit(1_400, own, ROOT)
        conn.exit(1_500, orphan, ROOT)
        monitor.sample()
        assert monitor.stats.escaped == {ROOT: 1}
        assert monitor.stats.orphaned_by == {(ROOT, True): 1}
        assert monitor.stats.zombies_seen == 3
        # Reaped before they could be watched (no such pids): only the
        # orphan's zombie counts as one PID 1 adopted.
        assert len(monitor.stats.adopted_lifetimes) == 1
    finally:
        monitor.close()
