"""The monitor's bookkeeping, fed with scripted tree walks (no forking).

``Monitor.walk`` and ``Monitor._status`` are replaced on the instance, the
processes are read from a scripted backend (``FakeSource``), and the clock
the monitor reads is a value the test sets, so every lifetime is exact. The
root is the test process itself, which certainly exists. The two real
backends are tested in ``test_sampling.py``.
"""

from __future__ import annotations

import os
import threading
import types
from unittest import mock

import psutil
import pytest

from zombiewatch import _platform, _proctl, _sampling
from zombiewatch import monitor as monitor_module
from zombiewatch.errors import ExitCode, ZombiewatchError
from zombiewatch.monitor import Monitor, StopFlag

Z = psutil.STATUS_ZOMBIE
S = psutil.STATUS_SLEEPING
R = psutil.STATUS_RUNNING
ROOT = os.getpid()


class Clock:
    """What ``time.monotonic()`` returns inside the monitor."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(monitor_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    return clock


class FakeSource:
    """A scripted backend (``_sampling.ProcessSource``): ``statuses`` and
    ``tree`` answer the walk, ``described`` the one-time reads, and ``held``
    is what the backend keeps for each process (descriptors, handles)."""

    name = "fake"

    def __init__(self, tree=None, statuses=None, threads=1):
        self.tree: dict[int, list[int]] = tree or {}
        self.statuses: dict[int, tuple[str, int] | None] = {
            pid: None if st is None else (st, threads) for pid, st in (statuses or {}).items()
        }
        self.threads = threads
        self.described: dict[int, tuple[int, str]] = {}
        self.held: set[int] = set()
        self.closed = 0
        self.children = mock.Mock(side_effect=lambda pid, threads: self.tree.get(pid, []))

    def stat(self, pid, renew):
        self.held.add(pid)
        return self.statuses.get(pid, (S, self.threads))

    def describe(self, pid):
        return self.described.get(pid)

    def retain(self, keep):
        self.held &= keep

    def close(self):
        self.closed += 1
        self.held.clear()


class Script:
    """Drive a Monitor through scripted samples."""

    def __init__(self, monitor, clock, monkeypatch):
        self.monitor = monitor
        self.source = monitor.source
        self.clock = clock
        self.walk_result: tuple[dict[int, str], set[int]] = ({}, {ROOT})
        self.direct: dict[int, str | None] = {}  # pid -> what a direct _status() read says
        self.status = mock.Mock(side_effect=lambda pid: self.direct.get(pid))
        monkeypatch.setattr(monitor, "walk", lambda: self.walk_result)
        monkeypatch.setattr(monitor, "_status", self.status)

    def sample(self, at, statuses, listed=None, direct=None):
        """Sample at time ``at``; ``listed`` defaults to the pids in ``statuses``."""
        if listed is None:
            listed = set(statuses)
        self.walk_result = (dict(statuses), {ROOT, *listed})
        self.direct = dict(direct or {})
        self.clock.now = at
        return self.monitor.sample()


@pytest.fixture
def script(clock, monkeypatch):
    return Script(Monitor(ROOT, interval=0.01, source=FakeSource()), clock, monkeypatch)


def test_construct_on_the_test_process():
    m = Monitor(ROOT, interval=0.05)
    assert m.root == ROOT
    assert m.sid == os.getsid(0)
    assert m.stats.interval == 0.05
    assert m.stats.samples == 0
    assert m.zombies == {}


def test_construct_on_a_missing_process_is_an_error(monkeypatch):
    monkeypatch.setattr(_proctl, "session_of", lambda pid: None)
    with pytest.raises(ZombiewatchError, match="does not exist") as info:
        Monitor(4_000_000, source=FakeSource())
    assert info.value.exit_code == ExitCode.NOT_MEASURED


# -- lifetimes -------------------------------------------------------------------


def test_zombie_seen_twice_then_gone_gets_one_lifetime(script):
    script.sample(1.0, {101: Z, 200: S})
    script.sample(1.5, {101: Z, 200: S})
    assert script.monitor.stats.lifetimes == []
    assert set(script.monitor.zombies) == {101}
    script.sample(2.25, {200: S})  # collected: gone from the tree
    stats = script.monitor.stats
    assert stats.lifetimes == [pytest.approx(1.25)]
    assert stats.zombies_seen == 1
    assert script.monitor.zombies == {}
    assert stats.samples == 3


def test_zombie_lifetime_is_measured_from_its_first_sample(script):
    script.sample(1.0, {})
    script.sample(2.0, {101: Z})
    script.sample(3.0, {101: Z})
    script.sample(4.0, {101: Z})
    script.sample(4.5, {})
    assert script.monitor.stats.lifetimes == [pytest.approx(2.5)]


def test_gone_and_unlisted_zombie_is_checked_directly_then_closed(script):
    script.sample(1.0, {101: Z})
    script.sample(2.0, {}, direct={})  # direct read: no such process
    script.status.assert_called_once_with(101)
    assert script.monitor.stats.lifetimes == [pytest.approx(1.0)]


def test_zombie_listed_but_without_status_is_closed_without_a_direct_read(script):
    # Listed by its parent, vanished before its status was read: collected.
    script.sample(1.0, {101: Z})
    script.sample(2.0, {}, listed={101})
    script.status.assert_not_called()
    assert script.monitor.stats.lifetimes == [pytest.approx(1.0)]


def test_several_zombies_get_one_lifetime_each(script):
    script.sample(1.0, {101: Z, 102: Z})
    script.sample(2.0, {102: Z, 103: Z})
    script.sample(4.0, {})
    assert sorted(script.monitor.stats.lifetimes) == [
        pytest.approx(1.0),
        pytest.approx(2.0),
        pytest.approx(3.0),
    ]
    assert script.monitor.stats.zombies_seen == 3


# -- churn and pid reuse ---------------------------------------------------------


def test_known_zombie_hidden_by_churn_is_kept(script):
    script.sample(1.0, {101: Z, 200: S})
    first = script.monitor.zombies[101]
    # The children file hid 101 this time, but a direct read still says Z.
    point = script.sample(2.0, {200: S}, direct={101: Z})
    script.status.assert_called_once_with(101)
    stats = script.monitor.stats
    assert stats.lifetimes == []
    assert script.monitor.zombies[101] is first
    assert stats.zombies_seen == 1
    assert point.zombies == 1
    assert point.live == 1

    script.sample(3.0, {101: Z, 200: S})  # listed again: still the same zombie
    assert stats.zombies_seen == 1
    assert script.monitor.zombies[101] is first

    script.sample(3.5, {200: S})  # really collected now
    assert stats.lifetimes == [pytest.approx(2.5)]
    assert stats.zombies_seen == 1


def test_hidden_zombie_that_was_collected_meanwhile_is_closed(script):
    script.sample(1.0, {101: Z})
    script.sample(2.0, {}, direct={101: None})
    assert script.monitor.stats.lifetimes == [pytest.approx(1.0)]
    assert script.monitor.zombies == {}


def test_zombie_pid_seen_again_sleeping_was_reused(script):
    script.sample(1.0, {101: Z})
    point = script.sample(1.75, {101: S})  # collected, and the pid went to a new child
    stats = script.monitor.stats
    assert stats.lifetimes == [pytest.approx(0.75)]
    assert script.monitor.zombies == {}
    assert point.live == 1
    assert point.zombies == 0
    script.status.assert_not_called()


def test_hidden_zombie_pid_reused_outside_the_tree_is_closed(script):
    script.sample(1.0, {101: Z})
    script.sample(2.0, {}, direct={101: S})
    assert script.monitor.stats.lifetimes == [pytest.approx(1.0)]


def test_reused_pid_that_dies_again_is_a_new_zombie(script):
    script.sample(1.0, {101: Z})
    script.sample(2.0, {101: R})
    script.sample(3.0, {101: Z})
    assert script.monitor.stats.zombies_seen == 2
    assert script.monitor.zombies[101].since == 3.0
    script.sample(3.5, {})
    assert script.monitor.stats.lifetimes == [pytest.approx(1.0), pytest.approx(0.5)]


# -- counts ----------------------------------------------------------------------


def test_peak_zombies_and_max_live_children(script):
    p1 = script.sample(1.0, {101: Z, 200: S, 201: S, 202: R})
    p2 = script.sample(2.0, {101: Z, 102: Z, 103: Z, 104: Z, 200: S})
    p3 = script.sample(3.0, {})
    stats = script.monitor.stats
    assert stats.peak_zombies == 4
    assert stats.max_live_children == 3
    assert (p1.live, p1.zombies) == (3, 1)
    assert (p2.live, p2.zombies) == (1, 4)
    assert (p3.live, p3.zombies) == (0, 0)
    assert list(stats.timeline) == [p1, p2, p3]
    assert [p.t for p in stats.timeline] == [1.0, 2.0, 3.0]


def test_zombies_seen_counts_each_zombie_once(script):
    script.sample(1.0, {101: Z, 102: Z})
    script.sample(2.0, {101: Z, 102: Z, 103: Z})
    script.sample(3.0, {101: Z, 102: Z, 103: Z})
    script.sample(4.0, {103: Z})
    assert script.monitor.stats.zombies_seen == 3
    assert script.monitor.stats.peak_zombies == 3


def test_memory_does_not_grow_with_the_number_of_zombies_per_sample(script):
    # A watch of a program that churns thousands of zombies: each sample
    # sees a new set. What the monitor keeps per sample must not depend on
    # how many zombies it saw (it once kept their pids in every timeline
    # point: hundreds of MB over a long watch of a big leak).
    import tracemalloc

    # The script's Mock would remember every direct read: not the monitor's memory.
    script.monitor._status = lambda pid: None
    zombies = 1000
    for n in range(5):  # warm up: the zombies dict and reservoir reach their size
        script.sample(n, {pid: Z for pid in range(n * zombies, (n + 1) * zombies)})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(5, 205):
            script.sample(n, {pid: Z for pid in range(n * zombies, (n + 1) * zombies)})
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stats = script.monitor.stats
    assert stats.zombies_seen == 205 * zombies
    assert len(stats.timeline) == 205
    # 200 samples: a timeline point each and the lifetime reservoir filling
    # up (10,000 floats); a pid per zombie per sample would be 200,000 ints.
    assert grown < 1_000_000, grown


def test_no_children_at_all(script):
    point = script.sample(1.0, {})
    stats = script.monitor.stats
    assert (point.live, point.zombies) == (0, 0)
    assert stats.peak_zombies == stats.max_live_children == stats.zombies_seen == 0
    assert stats.lifetime_ms() == {"p50": None, "p99": None, "max": None}


def test_lifetime_ms_reports_the_closed_lifetimes(script):
    script.sample(1.0, {101: Z, 102: Z})
    script.sample(1.002, {102: Z})
    script.sample(1.010, {})
    assert script.monitor.stats.lifetime_ms() == {"p50": 2.0, "p99": 10.0, "max": 10.0}


def test_sample_time_is_accumulated(script):
    script.sample(1.0, {101: Z})
    assert script.monitor.stats.sample_time == 0.0  # the fake clock did not move


# -- describing zombies and forgetting processes -----------------------------------


def test_new_zombie_is_described_from_its_process(script):
    script.source.described[101] = (999, "worker")
    script.sample(1.0, {101: Z})
    zombie = script.monitor.zombies[101]
    assert (zombie.pid, zombie.ppid, zombie.name, zombie.since) == (101, 999, "worker", 1.0)
    assert zombie.age(3.5) == pytest.approx(2.5)


def test_zombie_collected_while_described_is_still_recorded(script):
    script.sample(1.0, {101: Z})  # described: nothing, it is gone
    zombie = script.monitor.zombies[101]
    assert (zombie.ppid, zombie.name) == (0, "?")
    assert script.monitor.stats.zombies_seen == 1


def test_zombie_collected_while_described_counts_for_the_parent_the_walk_found(script):
    # Otherwise "seen" and the per-parent counts of the report disagree.
    script.monitor._origin = {101: ROOT}
    script.sample(1.0, {101: Z})
    assert script.monitor.zombies[101].ppid == ROOT
    assert script.monitor.stats.parents[ROOT].zombies_seen == 1


def test_processes_gone_from_the_tree_are_forgotten(script):
    script.source.held.update({101, 200})
    script.sample(1.0, {200: S})
    assert script.source.held == {200}


# -- reading one process through the backend -----------------------------------------


def test_direct_status_check_does_not_renew_but_the_walk_does():
    # A direct check asks about the process first seen; the walk about
    # whoever has the pid it just listed.
    source = FakeSource()
    source.stat = mock.Mock(return_value=(S, 1))  # type: ignore[method-assign]
    m = Monitor(ROOT, source=source)
    m._status(4242)
    m._stat(4242)
    assert source.stat.call_args_list == [mock.call(4242, False), mock.call(4242, True)]


def test_a_zombie_collected_before_it_is_described_is_still_recorded():
    m = Monitor(ROOT, source=FakeSource())  # describe() finds nothing
    zombie = m._describe(4242, 1.0)
    assert (zombie.pid, zombie.ppid, zombie.name) == (4242, 0, "?")


def test_the_monitor_reads_through_the_best_backend_here():
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    m = Monitor(ROOT)
    try:
        assert isinstance(m.source, _sampling.ProcfsSource)
    finally:
        m.close()


# -- walking the tree (scripted backend) -----------------------------------------------


def walker(tree, statuses, threads=1, **kwargs):
    """A monitor whose backend answers ``tree`` and ``statuses``."""
    return Monitor(ROOT, source=FakeSource(tree, statuses, threads), **kwargs)


def test_walk_follows_children_but_not_below_zombies():
    tree = {ROOT: [10, 11], 10: [12, 14], 11: [13], 12: [], 14: []}
    m = walker(tree, {10: S, 11: Z, 12: R, 14: None})  # 14 vanished between list and read

    found, listed = m.walk()

    assert found == {10: S, 11: Z, 12: R}
    assert listed == {ROOT, 10, 11, 12, 14}
    read_pids = {c.args[0] for c in m.source.children.call_args_list}
    assert 11 not in read_pids  # a zombie's children were reparented already
    assert 14 not in read_pids
    assert ROOT in read_pids
    assert ROOT not in found


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_walk_reads_children_as_the_thread_count_says(threads):
    m = walker({ROOT: [10], 10: [11]}, {10: S, 11: S}, threads)

    assert m.walk()[0] == {10: S, 11: S}
    assert m.source.children.call_args_list == [
        mock.call(ROOT, threads),
        mock.call(10, threads),
        mock.call(11, threads),
    ]


def test_walk_of_a_vanished_root_finds_nothing():
    m = walker({ROOT: [10]}, {ROOT: None})
    assert m.walk() == ({}, {ROOT})
    m.source.children.assert_not_called()


def test_walk_includes_adopted_processes_of_the_same_session(monkeypatch):
    tree = {1: [ROOT, 20, 21], ROOT: [], 20: [22], 22: []}
    m = walker(tree, {}, adopters=[1])
    m.sid = ROOT  # the root leads its session, as the runner's targets do
    sessions = {20: m.sid, 21: m.sid + 1}
    monkeypatch.setattr(_proctl, "session_of", lambda pid: sessions.get(pid))

    found, listed = m.walk()

    assert found == {20: S, 22: S}  # 21 is another session's child of the adopter
    assert listed == {ROOT, 20, 22}
    assert mock.call(1, 0) in m.source.children.call_args_list  # every thread's list


def test_walk_of_a_non_leader_adopts_only_processes_it_saw_before(monkeypatch):
    # The session of a root that does not lead it is shared with its parent
    # and siblings: an adopted member counts only if it was in the tree.
    m = walker({1: [20, 21], ROOT: []}, {}, adopters=[1])
    assert m.sid != ROOT
    monkeypatch.setattr(_proctl, "session_of", lambda pid: m.sid)
    m._seen = {20}

    found, _listed = m.walk()

    assert found == {20: S}


def test_walk_of_a_root_without_children():
    m = walker({}, {})
    assert m.walk() == ({}, {ROOT})


# -- what the backend holds follows the tree ------------------------------------------


def test_what_is_held_for_processes_gone_from_the_tree_is_released(script):
    script.source.held.update({ROOT, 101, 102, 200, 300})
    script.sample(1.0, {101: Z, 102: Z, 200: S})
    # 102 was hidden by churn but is still a zombie: what is held for it
    # stays, so the next direct check reads that very process.
    script.sample(2.0, {200: S}, direct={102: Z})
    assert script.source.held == {ROOT, 102, 200}
    script.sample(3.0, {})
    assert script.source.held == {ROOT}


def test_close_releases_the_backend_and_may_be_repeated(script):
    script.source.held.update({ROOT, 101})
    script.monitor.close()
    script.monitor.close()
    assert script.source.held == set()
    assert script.source.closed == 2


# -- orphans -----------------------------------------------------------------------


@pytest.mark.parametrize("middle_was_named", [False, True])
def test_a_double_forks_orphan_is_blamed_on_the_server_however_the_samples_fell(middle_was_named):
    # The server (ROOT) started 300, which started 301 and exited, so an
    # adopter (1) holds 301 now. Whether a sample named 300 first (it held
    # 301 as a zombie for a moment) is a race; the blame must not depend on it.
    m = Monitor(ROOT, interval=0.01, source=FakeSource())
    m._parent_of = {300: ROOT, 301: 300}
    if middle_was_named:
        m._parent(300, adopter=False)
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.orphaned_by == {(ROOT, True): 1}
    assert m.stats.escaped == {1: 1}
    m._count_escapes({301})  # still held next sample: counted once
    assert m.stats.orphaned_by == {(ROOT, True): 1}


def test_an_orphan_whose_parent_had_no_known_starter_is_blamed_on_that_parent():
    m = Monitor(ROOT, interval=0.01, source=FakeSource())
    m._parent_of = {301: 300}  # 300 was adopted itself, or the root
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.orphaned_by == {(300, False): 1}


def test_an_orphan_never_seen_with_a_parent_is_unattributed():
    m = Monitor(ROOT, interval=0.01, source=FakeSource())
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.orphaned_by == {(0, False): 1}


def test_an_orphan_a_walk_missed_is_not_counted_again_when_it_reappears():
    # Reading a children list while processes exit can skip entries.
    m = Monitor(ROOT, interval=0.01, source=FakeSource())
    m._parent_of = {300: ROOT, 301: 300}
    m._holding = {301: 1}
    m._count_escapes({301})
    m.stats.samples += 1
    m._holding = {}  # this walk skipped it
    m._count_escapes(set())
    m.stats.samples += 1
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.escaped == {1: 1}
    assert sum(m.stats.orphaned_by.values()) == 1


def test_escaped_orphans_are_forgotten_some_samples_after_they_go():
    m = Monitor(ROOT, interval=0.01, source=FakeSource())
    for pid in range(1000, 1100):
        m._holding = {pid: 1}
        m._count_escapes({pid})
        m.stats.samples += 1
    m._holding = {}
    for _ in range(2 * monitor_module.HELD_MEMORY):
        m._count_escapes(set())
        m.stats.samples += 1
    assert m._held == {}


def test_root_as_pid1_counts_the_orphans_it_adopts_not_its_own_children(clock):
    # run --pid1: the root is PID 1 of a namespace and the adopter of its
    # own tree. 30 is its own child; 32 is seen under 31 (the middle of a
    # double fork), then, 31 gone, under the root: an orphan it adopted.
    source = FakeSource({ROOT: [30, 31], 31: [32]}, {30: S, 31: S, 32: S})
    m = Monitor(ROOT, adopters=[ROOT], source=source)
    m.sample()
    assert m.stats.escaped == {}

    source.tree = {ROOT: [30, 32]}
    source.statuses = {30: (Z, 1), 32: (S, 1)}
    clock.now += 1
    m.sample()
    assert m.stats.escaped == {ROOT: 1}
    assert m.zombies[30].adopted is False  # its own child, never adopted

    source.statuses = {30: (Z, 1), 32: (Z, 1)}
    source.described = {32: (ROOT, "daemon")}
    clock.now += 1
    m.sample()
    assert m.zombies[32].adopted is True
    assert m.stats.escaped == {ROOT: 1}  # counted once


# -- who collected each zombie: its parent, or an adopter after it (#14, #15) --------


def test_a_zombie_whose_holder_lives_on_was_reaped_by_it(script):
    script.source.described[101] = (200, "w")
    script.sample(1.0, {101: Z, 200: S})
    script.sample(1.5, {200: S}, direct={200: S})
    assert script.monitor.handed_off == []
    assert script.monitor.stats.parents[200].reaped == 1
    assert script.monitor.stats.parents[200].handed_off == 0


def test_a_zombie_gone_with_its_holder_was_handed_off_after_its_hold(script):
    # The holder exited holding it; an adopter collected it: the holder's
    # leak, held from first sight to the sample that found both gone.
    script.source.described[101] = (200, "w")
    script.sample(1.0, {101: Z, 200: S})
    script.sample(2.5, {}, direct={200: None})
    [handed] = script.monitor.handed_off
    assert (handed.pid, handed.ppid, handed.held) == (101, 200, 1.5)
    assert script.monitor.stats.parents[200].handed_off == 1
    assert script.monitor.stats.parents[200].reaped == 0


def test_past_the_cap_handoffs_are_counted_when_held_long_enough(script, monkeypatch):
    monkeypatch.setattr(monitor_module, "MAX_HANDED_OFF", 1)
    script.monitor.settle = 1.0
    for n, held in enumerate([2.0, 2.0, 0.5]):
        pid = 101 + n
        script.source.described[pid] = (200, "w")
        script.sample(10.0 * n, {pid: Z, 200: S})
        script.sample(10.0 * n + held, {}, direct={200: None})
    assert len(script.monitor.handed_off) == 1
    assert script.monitor.handed_off_unlisted == 1  # the 0.5 s hold does not count


def test_a_zombie_the_adopter_says_it_collected_was_handed_off(script):
    # Whatever a direct read of the holder says (here: alive, as a reused
    # pid would), the adopter's note decides.
    script.monitor.adopter_reaps = {101: 1_200_000_000}  # noted at 1.2 s
    script.source.described[101] = (200, "w")
    script.sample(1.0, {101: Z, 200: S})
    script.sample(1.5, {200: S}, direct={200: S})
    assert [z.pid for z in script.monitor.handed_off] == [101]
    assert script.monitor.stats.parents[200].handed_off == 1
    assert script.monitor.adopter_reaps == {}


def test_an_adopters_note_from_before_the_zombie_is_of_another_process(script):
    script.monitor.adopter_reaps = {101: 500_000_000}  # noted at 0.5 s
    script.source.described[101] = (200, "w")
    script.sample(1.0, {101: Z, 200: S})
    script.sample(1.5, {200: S}, direct={200: S})
    assert script.monitor.handed_off == []
    assert script.monitor.stats.parents[200].reaped == 1


# -- the stop flag the background thread sleeps on ---------------------------------------


def test_the_stop_flag_times_out_clear_and_answers_at_once_set():
    flag = StopFlag()
    assert flag.wait(0.001) is False
    flag.set()
    flag.set()  # twice is once
    assert flag.is_set()
    assert flag.wait(60) is True  # returns at once: a test that hung here failed
    flag.clear()
    flag.clear()
    assert flag.wait(0.001) is False


def test_setting_the_stop_flag_wakes_a_thread_asleep_on_it():
    flag = StopFlag()
    woke: list[bool] = []
    sleeper = threading.Thread(target=lambda: woke.append(flag.wait(600)))
    sleeper.start()
    flag.set()
    sleeper.join(timeout=60)
    assert not sleeper.is_alive()
    assert woke == [True]
