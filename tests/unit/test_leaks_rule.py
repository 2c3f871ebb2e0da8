"""The leaked rule (runner.leaks): by age against the settle window, and
handed-off zombies by how long their creator held them (#14, #15)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from zombiewatch import runner
from zombiewatch.monitor import EXIT_SLACK, MonitorStats, TreeWatcher, Zombie


def watcher(method: str, zombies=(), handed_off=(), interval: float = 0.01, root: int = 1) -> Any:
    fake: Any = SimpleNamespace(
        method=method,
        root=root,
        stats=MonitorStats(method=method, interval=interval),
        interval=interval,
        zombies={z.pid: z for z in zombies},
        handed_off=list(handed_off),
    )
    # The rule itself, not a copy: TreeWatcher.handoff_bound reads only .method.
    fake.handoff_bound = lambda zombie, settle: TreeWatcher.handoff_bound(fake, zombie, settle)
    return fake


def zombie(pid: int, since: float, **kwargs: Any) -> Zombie:
    return Zombie(pid=pid, ppid=10, name="w", since=since, **kwargs)


@pytest.mark.parametrize("method", ["sample", "events"])
def test_leaked_once_a_zombie_for_the_whole_window(method: str) -> None:
    # The end is at t=10 with a 1 s window: born at 8.5 it is leaked; born
    # at 9.5, in the window, it is not yet (bullet 6: "zombie for 473 ms").
    old, young = zombie(1, 8.5), zombie(2, 9.5)
    leaked, unsettled = runner.leaks(watcher(method, [old, young]), 10.0, 1.0)
    assert [z.pid for z in leaked] == [1]
    assert unsettled == 1


def test_a_sampled_zombie_first_seen_just_inside_the_window_is_given_an_interval() -> None:
    # First seen 5 ms after the window began, with samples every 10 ms: it
    # may have been one before it, so it counts.
    seen = zombie(1, 9.005)
    assert runner.leaks(watcher("sample", [seen]), 10.0, 1.0)[0] == [seen]
    assert runner.leaks(watcher("events", [dataclasses.replace(seen, exact=True)]), 10.0, 1.0) == (
        [],
        1,
    )


def test_zombies_an_adopter_holds_are_never_leaks() -> None:
    orphan = zombie(1, 0.0, adopted=True)
    assert runner.leaks(watcher("sample", [orphan]), 10.0, 1.0) == ([], 0)


def test_orphans_the_target_adopted_as_pid1_are_its_leaks() -> None:
    # run --pid1: the target is the adopter of its own tree (parent 10 here).
    orphan = zombie(1, 0.0, adopted=True)
    assert runner.leaks(watcher("sample", [orphan], root=10), 10.0, 1.0) == ([orphan], 0)


@pytest.mark.parametrize(
    ("method", "held", "leak"),
    [("sample", 1.5, True), ("sample", 0.2, False),
     ("events", 0.2, True), ("events", 0.002, False)],
)  # fmt: skip
def test_handed_off_zombies_are_their_creators_leaks(method: str, held: float, leak: bool) -> None:
    # Sampled: held past the settle window. Events: never collected by a
    # creator that held it EXIT_SLACK or more (one held 2 ms was dying too).
    handed = zombie(1, 3.0, held=held)
    leaked, unsettled = runner.leaks(watcher(method, handed_off=[handed]), 10.0, 1.0)
    assert (leaked == [handed]) is leak
    assert unsettled == 0


def test_the_handoff_bound_never_exceeds_the_settle_window() -> None:
    held = zombie(1, 0.0)
    assert watcher("events").handoff_bound(held, 0.05) == 0.05
    assert watcher("events").handoff_bound(held, 5) == EXIT_SLACK
    assert watcher("sample").handoff_bound(held, 5) == 5


def test_a_creator_seen_running_beside_its_zombie_gets_the_settle_window() -> None:
    # A double fork's middle process held off the CPU between its worker's
    # exit and its own: running (state R) one interval after the worker
    # died, it held the zombie 0.3 s, and was exiting, not neglecting it.
    busy = zombie(1, 3.0, held=0.3, holder_running=True)
    idle = zombie(2, 3.0, held=0.3)
    leaked, _ = runner.leaks(watcher("events", handed_off=[busy, idle]), 10.0, 1.0)
    assert [z.pid for z in leaked] == [2]
    late = dataclasses.replace(busy, held=1.2)  # but not past the window
    assert runner.leaks(watcher("events", handed_off=[late]), 10.0, 1.0)[0] == [late]
