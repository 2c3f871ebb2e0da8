"""The monitor's bookkeeping, fed with scripted tree walks (no forking).

``Monitor.walk`` and ``Monitor._status`` are replaced on the instance, and
the clock the monitor reads is a value the test sets, so every lifetime is
exact. The root is the test process itself, which certainly exists.

Where it matters, a test runs on both ways of reading a process: kept
``/proc`` descriptors (Linux) and psutil (elsewhere, forced here by
turning ``_platform.can_use_proc_reader`` off).
"""

from __future__ import annotations

import os
import types
from unittest import mock

import psutil
import pytest

from zombiewatch import _platform
from zombiewatch import monitor as monitor_module
from zombiewatch.errors import AccessDeniedError, ExitCode, ZombiewatchError
from zombiewatch.monitor import Monitor

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


class Script:
    """Drive a Monitor through scripted samples."""

    def __init__(self, monitor, clock, monkeypatch):
        self.monitor = monitor
        self.clock = clock
        self.walk_result: tuple[dict[int, str], set[int]] = ({}, {ROOT})
        self.direct: dict[int, str | None] = {}  # pid -> what a direct _status() read says
        self.status = mock.Mock(side_effect=lambda pid: self.direct.get(pid))
        monkeypatch.setattr(monitor, "walk", lambda: self.walk_result)
        monkeypatch.setattr(monitor, "_status", self.status)
        # psutil handles only from the test: scripted pids are not real ones.
        monkeypatch.setattr(monitor, "_process", monitor._procs.get)

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
    return Script(Monitor(ROOT, interval=0.01), clock, monkeypatch)


def test_construct_on_the_test_process():
    m = Monitor(ROOT, interval=0.05)
    assert m.root == ROOT
    assert m.sid == os.getsid(0)
    assert m.stats.interval == 0.05
    assert m.stats.samples == 0
    assert m.zombies == {}


def test_construct_on_a_missing_process_is_an_error(monkeypatch):
    monkeypatch.setattr(_platform, "session_of", lambda pid: None)
    with pytest.raises(ZombiewatchError, match="does not exist") as info:
        Monitor(4_000_000)
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
    proc = mock.Mock()
    proc.ppid.return_value = 999
    proc.name.return_value = "worker"
    script.monitor._procs[101] = proc
    script.sample(1.0, {101: Z})
    zombie = script.monitor.zombies[101]
    assert (zombie.pid, zombie.ppid, zombie.name, zombie.since) == (101, 999, "worker", 1.0)
    assert zombie.age(3.5) == pytest.approx(2.5)


def test_zombie_collected_while_described_is_still_recorded(script):
    proc = mock.Mock()
    proc.ppid.side_effect = psutil.NoSuchProcess(101)
    script.monitor._procs[101] = proc
    script.sample(1.0, {101: Z})
    zombie = script.monitor.zombies[101]
    assert (zombie.ppid, zombie.name) == (0, "?")
    assert script.monitor.stats.zombies_seen == 1


def test_zombie_collected_while_described_counts_for_the_parent_the_walk_found(script):
    # Otherwise "seen" and the per-parent counts of the report disagree.
    proc = mock.Mock()
    proc.ppid.side_effect = psutil.NoSuchProcess(101)
    script.monitor._procs[101] = proc
    script.monitor._origin = {101: ROOT}
    script.sample(1.0, {101: Z})
    assert script.monitor.zombies[101].ppid == ROOT
    assert script.monitor.stats.parents[ROOT].zombies_seen == 1


def test_processes_gone_from_the_tree_are_forgotten(script):
    script.monitor._procs.update({101: mock.Mock(), 200: mock.Mock()})
    script.sample(1.0, {200: S})
    assert set(script.monitor._procs) == {200}


# -- reading one process -------------------------------------------------------------


def _without_proc_reader(monkeypatch) -> None:
    monkeypatch.setattr(_platform, "can_use_proc_reader", lambda: False)


@pytest.fixture
def monitor(monkeypatch):
    """A monitor that reads through psutil, as where /proc cannot be kept open."""
    _without_proc_reader(monkeypatch)
    return Monitor(ROOT)


@pytest.fixture
def proc_monitor():
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    m = Monitor(ROOT)
    yield m
    m.close()


@pytest.mark.parametrize(
    "error", [psutil.NoSuchProcess(4242), psutil.ZombieProcess(4242)], ids=["gone", "zombie"]
)
def test_status_of_a_vanished_process_is_none(monitor, error):
    monitor._procs[4242] = mock.Mock(status=mock.Mock(side_effect=error))
    assert monitor._status(4242) is None
    assert 4242 not in monitor._procs


def test_status_access_denied_is_an_error_not_an_undercount(monitor):
    monitor._procs[4242] = mock.Mock(status=mock.Mock(side_effect=psutil.AccessDenied(4242)))
    with pytest.raises(AccessDeniedError, match="4242") as info:
        monitor._status(4242)
    assert info.value.exit_code == ExitCode.NOT_MEASURED
    assert isinstance(info.value.__cause__, psutil.AccessDenied)


def test_status_reuses_the_process_object(monitor):
    proc = mock.Mock(status=mock.Mock(return_value=S))
    monitor._procs[4242] = proc
    assert monitor._status(4242) == S
    assert monitor._status(4242) == S
    assert proc.status.call_count == 2


def test_status_of_the_test_process_is_read_through_psutil(monitor):
    assert monitor._status(ROOT) in {R, S}
    assert ROOT in monitor._procs


def test_status_of_the_test_process_is_read_through_a_kept_descriptor(proc_monitor):
    assert proc_monitor._status(ROOT) in {R, S}
    assert proc_monitor._status(ROOT) in {R, S}
    assert proc_monitor._reader.pids() == [ROOT]
    assert proc_monitor._procs == {}  # psutil is not involved
    proc_monitor.close()
    proc_monitor.close()  # idempotent
    assert proc_monitor._reader.kept == 0


def test_status_of_a_pid_that_cannot_exist_is_none(proc_monitor):
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1
    assert proc_monitor._status(beyond) is None
    assert proc_monitor._stat(beyond) is None
    assert proc_monitor._reader.kept == 0


def test_status_permission_error_from_proc_is_an_error(proc_monitor, monkeypatch):
    denied = PermissionError(13, "Permission denied")
    monkeypatch.setattr(proc_monitor._reader, "stat", mock.Mock(side_effect=denied))
    for read in (proc_monitor._status, proc_monitor._stat):
        with pytest.raises(AccessDeniedError, match="4242") as info:
            read(4242)
        assert info.value.exit_code == ExitCode.NOT_MEASURED
        assert info.value.__cause__ is denied


def test_direct_status_check_does_not_renew_but_the_walk_does(proc_monitor, monkeypatch):
    # A direct check asks about the process first seen; the walk about
    # whoever has the pid it just listed.
    stat = mock.Mock(return_value=(S, 1))
    monkeypatch.setattr(proc_monitor._reader, "stat", stat)
    proc_monitor._status(4242)
    proc_monitor._stat(4242)
    assert stat.call_args_list == [mock.call(4242, False), mock.call(4242, True)]


def test_a_new_zombie_gets_its_psutil_handle_when_described(proc_monitor, monkeypatch):
    handle = mock.Mock()
    handle.ppid.return_value = 999
    handle.name.return_value = "worker"
    make = mock.Mock(return_value=handle)
    monkeypatch.setattr(psutil, "Process", make)
    zombie = proc_monitor._describe(4242, 1.0)
    assert make.call_args_list[0] == mock.call(4242)  # then its parent's, for the record
    assert (zombie.ppid, zombie.name) == (999, "worker")
    assert proc_monitor._procs == {4242: handle}


def test_a_zombie_collected_before_its_handle_is_made_is_still_recorded(proc_monitor, monkeypatch):
    monkeypatch.setattr(psutil, "Process", mock.Mock(side_effect=psutil.NoSuchProcess(4242)))
    zombie = proc_monitor._describe(4242, 1.0)
    assert (zombie.pid, zombie.ppid, zombie.name) == (4242, 0, "?")


# -- walking the tree (scripted /proc) -----------------------------------------------


@pytest.fixture(params=["proc", "psutil"])
def walker(request, monkeypatch):
    """Make monitors that read through kept /proc descriptors, or through psutil."""
    if request.param == "psutil":
        _without_proc_reader(monkeypatch)
    elif not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    made = []

    def make(*args, **kwargs):
        m = Monitor(*args, **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def script_tree(monkeypatch, m, tree, statuses, threads=1):
    """Replace ``m``'s reads: ``tree`` gives the children, ``statuses`` the states.

    Returns the mock the children are read through.
    """
    stat = {pid: (status, threads) for pid, status in statuses.items()}
    stat[m.root] = (S, threads)
    monkeypatch.setattr(m, "_stat", lambda pid: stat.get(pid, (S, threads)))
    children = mock.Mock(side_effect=lambda pid, threads: tree.get(pid, []))
    monkeypatch.setattr(m, "_children", children)
    return children


def test_walk_follows_children_but_not_below_zombies(monkeypatch, walker):
    m = walker(ROOT)
    tree = {ROOT: [10, 11], 10: [12, 14], 11: [13], 12: [], 14: []}
    statuses = {10: S, 11: Z, 12: R}
    read = script_tree(monkeypatch, m, tree, statuses)
    stat = {pid: (st, 1) for pid, st in statuses.items()} | {ROOT: (S, 1), 14: None}
    monkeypatch.setattr(m, "_stat", stat.__getitem__)  # 14 vanished between list and read

    found, listed = m.walk()

    assert found == {10: S, 11: Z, 12: R}
    assert listed == {ROOT, 10, 11, 12, 14}
    read_pids = {c.args[0] for c in read.call_args_list}
    assert 11 not in read_pids  # a zombie's children were reparented already
    assert 14 not in read_pids
    assert ROOT in read_pids
    assert ROOT not in found


@pytest.mark.parametrize("threads", [1, 3])
def test_walk_reads_children_as_the_thread_count_says(monkeypatch, threads):
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    m = Monitor(ROOT)
    read = script_tree(monkeypatch, m, {ROOT: [10], 10: [11]}, {10: S, 11: S}, threads)

    assert m.walk()[0] == {10: S, 11: S}
    assert read.call_args_list == [
        mock.call(ROOT, threads),
        mock.call(10, threads),
        mock.call(11, threads),
    ]


def test_walk_of_a_vanished_root_finds_nothing(monkeypatch):
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    m = Monitor(ROOT)
    read = script_tree(monkeypatch, m, {ROOT: [10]}, {})
    monkeypatch.setattr(m, "_stat", lambda pid: None)
    assert m.walk() == ({}, {ROOT})
    read.assert_not_called()


def test_walk_includes_adopted_processes_of_the_same_session(monkeypatch, walker):
    m = walker(ROOT, adopters=[1])
    m.sid = ROOT  # the root leads its session, as the runner's targets do
    tree = {1: [ROOT, 20, 21], ROOT: [], 20: [22], 22: []}
    sessions = {20: m.sid, 21: m.sid + 1}
    monkeypatch.setattr(_platform, "read_children", lambda pid: tree.get(pid, []))
    monkeypatch.setattr(_platform, "session_of", lambda pid: sessions.get(pid))
    script_tree(monkeypatch, m, tree, {})

    found, listed = m.walk()

    assert found == {20: S, 22: S}  # 21 is another session's child of the adopter
    assert listed == {ROOT, 20, 22}


def test_walk_of_a_non_leader_adopts_only_processes_it_saw_before(monkeypatch, walker):
    # The session of a root that does not lead it is shared with its parent
    # and siblings: an adopted member counts only if it was in the tree.
    m = walker(ROOT, adopters=[1])
    assert m.sid != ROOT
    tree = {1: [20, 21], ROOT: []}
    monkeypatch.setattr(_platform, "read_children", lambda pid: tree.get(pid, []))
    monkeypatch.setattr(_platform, "session_of", lambda pid: m.sid)
    script_tree(monkeypatch, m, tree, {})
    m._seen = {20}

    found, _listed = m.walk()

    assert found == {20: S}


def test_walk_of_a_root_without_children(monkeypatch, walker):
    m = walker(ROOT)
    script_tree(monkeypatch, m, {}, {})
    assert m.walk() == ({}, {ROOT})


def test_walk_on_the_psutil_path_reads_every_thread_and_psutil_states(monkeypatch):
    _without_proc_reader(monkeypatch)
    m = Monitor(ROOT)
    tree = {ROOT: [10, 11], 10: [12]}
    read = mock.Mock(side_effect=lambda pid: tree.get(pid, []))
    monkeypatch.setattr(_platform, "read_children", read)
    statuses = {10: S, 11: Z, 12: R}
    monkeypatch.setattr(m, "_status", statuses.__getitem__)

    assert m.walk() == (statuses, {ROOT, 10, 11, 12})
    assert [c.args[0] for c in read.call_args_list] == [ROOT, 10, 12]


# -- descriptors follow the tree ---------------------------------------------------


class FakeReader:
    """Stands in for ``_platform.ProcReader``: which pids have descriptors."""

    def __init__(self, pids):
        self.open = set(pids)
        self.closed = 0

    def pids(self):
        return list(self.open)

    def forget(self, pid):
        self.open.discard(pid)

    def ppid_name(self, pid):
        return None  # nothing read through it: the psutil path describes

    def close(self):
        self.closed += 1
        self.open.clear()


def test_descriptors_of_processes_gone_from_the_tree_are_closed(script):
    reader = script.monitor._reader = FakeReader({ROOT, 101, 102, 200, 300})
    script.sample(1.0, {101: Z, 102: Z, 200: S})
    # 102 was hidden by churn but is still a zombie: its descriptor stays,
    # so the next direct check reads that very process.
    script.sample(2.0, {200: S}, direct={102: Z})
    assert reader.open == {ROOT, 102, 200}
    script.sample(3.0, {})
    assert reader.open == {ROOT}


def test_close_releases_the_descriptors_and_may_be_repeated(script):
    reader = script.monitor._reader = FakeReader({ROOT, 101})
    script.monitor.close()
    script.monitor.close()
    assert reader.open == set()
    assert reader.closed == 2


def test_close_without_descriptors_is_harmless(monkeypatch):
    _without_proc_reader(monkeypatch)
    m = Monitor(ROOT)
    m.close()
    m.close()


# -- orphans -----------------------------------------------------------------------


@pytest.mark.parametrize("middle_was_named", [False, True])
def test_a_double_forks_orphan_is_blamed_on_the_server_however_the_samples_fell(middle_was_named):
    # The server (ROOT) started 300, which started 301 and exited, so an
    # adopter (1) holds 301 now. Whether a sample named 300 first (it held
    # 301 as a zombie for a moment) is a race; the blame must not depend on it.
    m = Monitor(ROOT, interval=0.01)
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
    m = Monitor(ROOT, interval=0.01)
    m._parent_of = {301: 300}  # 300 was adopted itself, or the root
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.orphaned_by == {(300, False): 1}


def test_an_orphan_never_seen_with_a_parent_is_unattributed():
    m = Monitor(ROOT, interval=0.01)
    m._holding = {301: 1}
    m._count_escapes({301})
    assert m.stats.orphaned_by == {(0, False): 1}


def test_an_orphan_a_walk_missed_is_not_counted_again_when_it_reappears():
    # Reading a children list while processes exit can skip entries.
    m = Monitor(ROOT, interval=0.01)
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
    m = Monitor(ROOT, interval=0.01)
    for pid in range(1000, 1100):
        m._holding = {pid: 1}
        m._count_escapes({pid})
        m.stats.samples += 1
    m._holding = {}
    for _ in range(2 * monitor_module.HELD_MEMORY):
        m._count_escapes(set())
        m.stats.samples += 1
    assert m._held == {}
