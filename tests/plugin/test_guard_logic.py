"""The guard's decisions on scripted looks: no process is started here.

A fake monitor plays back what each look sees, a fake clock stands in for
time, and ``os.waitpid`` is scripted for reaping, the way gunicorn's
``test_arbiter.py`` scripts it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from zombiewatch import _guard, _procfs, _proctl
from zombiewatch._guard import Settings, ZombieGuard, ZombieLeak
from zombiewatch.monitor import MonitorStats, Zombie
from zombiewatch.pytest_plugin import _validate_allow, _validate_settle

Z, R = "zombie", "running"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeMonitor:
    """Each sample() shows the next {pid: status} of the script; the last repeats."""

    def __init__(self, script: list[dict[int, str]], clock: FakeClock) -> None:
        self.script: Iterator[dict[int, str]] = iter(script)
        self.current: dict[int, str] = {}
        self.clock = clock
        self.zombies: dict[int, Zombie] = {}
        self.last: dict[int, str] = {}
        self.samples = 0
        self.escapes: list[tuple[int, int, int, bool, str]] = []
        self.stats = MonitorStats(method="sample")  # ages bounded by looks, as sampled

    def sample(self) -> None:
        self.samples += 1
        self.current = next(self.script, self.current)
        self.last = dict(self.current)
        now = self.clock()
        for pid in list(self.zombies):
            if self.current.get(pid) != Z:
                del self.zombies[pid]
        for pid, status in self.current.items():
            if status == Z and pid not in self.zombies:
                self.zombies[pid] = Zombie(pid=pid, ppid=os.getpid(), name="true", since=now)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_guard(monkeypatch, clock):
    def make(script: list[dict[int, str]], settle: float = 1.0, allow: int = 0) -> ZombieGuard:
        monitor = FakeMonitor(script, clock)
        monkeypatch.setattr(_proctl, "has_children", lambda: True)
        monkeypatch.setattr(_guard, "_monitor_of", lambda root: monitor)
        return ZombieGuard(Settings(settle=settle, allow=allow), clock=clock, sleep=clock.sleep)

    return make


def test_without_children_a_look_is_one_probe_and_no_monitor(monkeypatch, clock) -> None:
    monkeypatch.setattr(_guard, "_with_events", lambda: False)  # the sampler's economy
    probes: list[bool] = []

    def has_children() -> bool:
        probes.append(False)
        return False

    monkeypatch.setattr(_proctl, "has_children", has_children)

    def no_monitor(root: int) -> None:
        raise AssertionError("a monitor was made for a process without children")

    monkeypatch.setattr(_guard, "_monitor_of", no_monitor)
    guard = ZombieGuard(Settings(), clock=clock, sleep=clock.sleep)

    assert guard.settled() == []
    assert guard.count() == 0
    assert len(probes) == 3  # the baseline, settled(), count()
    assert clock.sleeps == []


def test_with_kernel_events_the_monitor_listens_from_the_tests_start(monkeypatch, clock) -> None:
    # A child forked and exited before the first look with children must be
    # heard: the event watcher is made at the baseline, children or not.
    monkeypatch.setattr(_guard, "_with_events", lambda: True)
    monkeypatch.setattr(_proctl, "has_children", lambda: False)
    monitor = FakeMonitor([{}], clock)
    made: list[int] = []

    def monitor_of(root: int) -> FakeMonitor:
        made.append(root)
        return monitor

    monkeypatch.setattr(_guard, "_monitor_of", monitor_of)
    ZombieGuard(Settings(settle=0), clock=clock, sleep=clock.sleep)
    assert made == [os.getpid()]
    assert monitor.samples == 1


def test_the_monitor_starts_with_the_first_child(monkeypatch, clock) -> None:
    monkeypatch.setattr(_guard, "_with_events", lambda: False)  # sampling
    children: list[int] = []
    monkeypatch.setattr(_proctl, "has_children", lambda: bool(children))
    monitor = FakeMonitor([{8: Z}], clock)
    monkeypatch.setattr(_guard, "_monitor_of", lambda root: monitor)
    guard = ZombieGuard(Settings(settle=0), clock=clock, sleep=clock.sleep)  # no child yet
    clock.now += 2
    children.append(8)

    [leaked] = guard.settled()

    assert leaked.pid == 8
    assert leaked.max_age == pytest.approx(2.0)  # not a zombie at the start: no child at all
    assert leaked.not_yet_at == "when the test began"


def test_zombies_from_before_the_test_are_not_its_own(make_guard) -> None:
    guard = make_guard([{7: Z}, {7: Z}])

    assert guard.settled() == []
    assert guard.count() == 0


def test_a_clean_test_costs_one_look_and_no_sleep(make_guard, clock) -> None:
    guard = make_guard([{}, {}])

    assert guard.settled() == []
    assert clock.sleeps == []


def test_a_zombie_collected_within_the_window_passes_after_backoff(make_guard, clock) -> None:
    guard = make_guard([{}, {8: Z}, {8: Z}, {8: Z}, {}])

    assert guard.settled() == []
    assert clock.sleeps == [0.001, 0.002, 0.004]


def test_a_zombie_never_collected_waits_exactly_the_window(make_guard, clock) -> None:
    guard = make_guard([{}, {8: Z}], settle=0.5)

    [leaked] = guard.settled()

    assert leaked.pid == 8
    assert sum(clock.sleeps) == pytest.approx(0.5)
    assert max(clock.sleeps) == 0.05  # backoff is capped
    assert clock.sleeps == sorted(clock.sleeps[:-1]) + clock.sleeps[-1:]  # grows, then the rest


def test_settle_zero_looks_once(make_guard, clock) -> None:
    guard = make_guard([{}, {8: Z}], settle=0)

    assert [z.pid for z in guard.settled()] == [8]
    assert clock.sleeps == []


def test_within_allow_it_stops_waiting_at_once(make_guard, clock) -> None:
    guard = make_guard([{}, {8: Z}], allow=1)

    assert [z.pid for z in guard.settled()] == [8]
    assert clock.sleeps == []


def test_it_waits_for_a_child_the_test_started_to_finish(make_guard, clock) -> None:
    # Still running at the end of the test, a zombie a moment later.
    guard = make_guard([{}, {8: R}, {8: R}, {8: Z}], settle=0.5)

    assert [z.pid for z in guard.settled()] == [8]
    assert sum(clock.sleeps) == pytest.approx(0.5)


def test_a_process_running_before_the_test_is_not_waited_for(make_guard, clock) -> None:
    guard = make_guard([{5: R}, {5: R}])

    assert guard.settled() == []
    assert clock.sleeps == []


def test_the_age_bounds_come_from_the_looks_around_the_change(make_guard, clock) -> None:
    guard = make_guard([{}, {}, {8: Z}], settle=0.3)  # begins at t=100
    clock.now = 102.0
    guard.count()  # not yet a zombie at t=102
    clock.now = 105.0
    [leaked] = guard.settled(settle=0)  # first seen at t=105
    clock.now = 106.0

    [leaked] = guard.settled(settle=0)

    assert leaked.min_age == pytest.approx(1.0)
    assert leaked.max_age == pytest.approx(4.0)
    assert leaked.not_yet_at == "when zombie_guard looked"


def test_a_zombie_that_was_running_when_the_test_began_is_not_its_own(make_guard, clock) -> None:
    # A bystander: the process was running when the test began; its zombie
    # is whoever started it's, and the test is not kept waiting for it.
    guard = make_guard([{5: R}, {5: Z}], settle=1)

    assert guard.settled() == []
    assert clock.sleeps == []
    [inherited] = guard.inherited()
    assert inherited.pid == 5
    assert inherited.running_at_start


def test_a_process_a_wider_fixture_started_is_not_waited_for(make_guard, clock) -> None:
    guard = make_guard([{}, {6: R}, {6: Z}], settle=1)
    assert guard.running("after the fixture") == {6}
    guard.foreign[6] = "fixture 'server' (module scope)"

    assert guard.settled() == []
    assert clock.sleeps == []
    assert guard.left_running() == []
    assert [z.pid for z in guard.inherited()] == [6]


def test_check_raises_an_assertion_with_the_pids(make_guard) -> None:
    guard = make_guard([{}, {8: Z, 9: Z}], settle=0.1)

    with pytest.raises(ZombieLeak, match="left 2 zombie processes") as info:
        guard.check()

    assert isinstance(info.value, AssertionError)
    assert "pid 8 'true'" in str(info.value)
    assert "pid 9 'true'" in str(info.value)


def test_the_message_lists_at_most_twenty(make_guard) -> None:
    guard = make_guard([{}, {pid: Z for pid in range(100, 125)}], settle=0)

    text = guard.describe(guard.settled(), 0, 0)

    assert text.count("\n  pid ") == 20
    assert "... and 5 more" in text


# -- reaping -------------------------------------------------------------------------


def test_reap_collects_own_children_and_names_the_others(make_guard, monkeypatch) -> None:
    guard = make_guard([{}, {8: Z, 9: Z, 10: Z, 11: Z}], settle=0)
    leaked = guard.settled()
    grandchild = leaked[3] = _guard.LeakedZombie(11, 4242, "x", 0, 0, "?", False)
    results: dict[int, tuple[int, int] | BaseException] = {
        8: (8, 0),  # collected
        9: ChildProcessError(),  # someone else was faster: gone all the same
        10: (0, 0),  # pid reused by a live child: not blocked on, not collected
    }
    calls = []

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        calls.append((pid, options))
        result = results[pid]
        if isinstance(result, BaseException):
            raise result
        return result

    monkeypatch.setattr(os, "waitpid", waitpid)

    reaped, not_ours = guard.reap(leaked)

    assert reaped == [8]
    assert not_ours == [grandchild]
    assert calls == [(8, os.WNOHANG), (9, os.WNOHANG), (10, os.WNOHANG)]  # never 11
    text = _guard.reap_text(reaped, not_ours)
    assert "--zombiewatch-reap collected pid 8\n" in text
    assert "could not collect pid 11" in text
    assert "(pid 4242)" in text


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (2, 2.0), ("0.25", 0.25), (1.5, 1.5)])
def test_valid_settle_values(value: object, expected: float) -> None:
    assert _validate_settle(value, "here") == expected


@pytest.mark.parametrize("value", [-1, "-0.1", "x", "", None, True, float("nan"), "inf", [1]])
def test_invalid_settle_values_name_where(value: object) -> None:
    with pytest.raises(pytest.UsageError, match=r"^zombiewatch: here: settle must be"):
        _validate_settle(value, "here")


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (3, 3), ("7", 7), (" 2 ", 2)])
def test_valid_allow_values(value: object, expected: int) -> None:
    assert _validate_allow(value, "here") == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.0", 1.0, "", None, False, "x"])
def test_invalid_allow_values_name_where(value: object) -> None:
    with pytest.raises(pytest.UsageError, match=r"^zombiewatch: here: allow must be"):
        _validate_allow(value, "here")


# -- escaped orphans (the sampler's view) --------------------------------------------


class FakeStat:
    def __init__(self, pid: int, ppid: int, state: str = "Z", comm: str = "true") -> None:
        self.pid, self.ppid, self.state, self.comm = pid, ppid, state, comm


def test_a_zombie_whose_holder_exited_escaped_and_is_not_the_tests(
    make_guard, monkeypatch, clock
) -> None:
    # 9 is a zombie of 20 (a process the test started); 20 exits and is
    # collected, so 9 goes to PID 1: outside the tree, not a leak.
    guard = make_guard([{}, {20: R, 9: Z}, {9: Z}], settle=0.5)
    monitor = _guard._monitor_of(0)
    stats = {9: FakeStat(9, ppid=1)}
    monkeypatch.setattr(_procfs, "read_stat", stats.get)
    guard.count()  # held by 20 at this look
    monitor.zombies[9] = Zombie(pid=9, ppid=20, name="true", since=clock())

    assert guard.settled() == []
    [escaped] = guard.escapes()
    assert escaped == _guard.Escaped(9, "true", orphaned_by=20, held_by=1, zombie=True)
    assert (
        "its parent pid 20 exited without collecting it; pid 1 holds it now"
        in (guard.escape_lines([escaped])[0])
    )


def test_a_zombie_held_by_a_live_process_of_the_tree_is_the_tests(make_guard, monkeypatch) -> None:
    guard = make_guard([{}, {20: R, 9: Z}], settle=0)
    monkeypatch.setattr(_procfs, "read_stat", lambda pid: pytest.fail("no read needed"))
    guard.count()
    monitor = _guard._monitor_of(0)
    monitor.zombies[9] = Zombie(pid=9, ppid=20, name="true", since=0)

    assert [z.pid for z in guard.settled()] == [9]
    assert guard.escapes() == []


def test_a_running_child_that_left_the_tree_escaped(make_guard, monkeypatch) -> None:
    guard = make_guard([{}, {30: R}, {}], settle=0)
    monkeypatch.setattr(_procfs, "read_stat", {30: FakeStat(30, 1, "S", "daemon")}.get)
    guard.count()

    assert guard.settled() == []
    assert guard.escapes() == [_guard.Escaped(30, "daemon", 0, 1, False)]
