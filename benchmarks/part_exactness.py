"""The exactness half of part 3 of ``bench.py``: does a monitor sample miss a
zombie, or a live child, that full ``/proc`` scans just before and just after
it both show, while a parent forks a child every 0.5 ms and collects them
every 20 ms? A child that changed between the two scans is not counted:
either answer is right for it.
"""

from __future__ import annotations

import time

import psutil
from _harness import Plan, Procs, Row, Table, Tools, scan_proc, start_farm

from zombiewatch.monitor import Monitor


def descendants(scan: dict[int, tuple[int, str, int]], root: int) -> dict[int, tuple[str, int]]:
    """Every descendant of ``root`` in ``scan``: pid -> (state, start time)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state, _start) in scan.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = {}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out[child] = scan[child][1:]
            stack.append(child)
    return out


def part_exactness(
    table: Table, procs: Procs, tools: Tools, plan: Plan, monitor_class: type[Monitor] = Monitor
) -> None:
    """Does a sample miss what full scans before and after it both show?"""
    farm, pid = start_farm(procs, tools, "churn", f"{plan.churn_seconds + 5:g}")
    monitor = monitor_class(pid)
    # The sample keeps only the zombies it found; to judge the live children
    # too, keep the statuses its own walk read.
    captured: list[dict[int, str]] = []
    walk = monitor.walk

    def capturing_walk() -> tuple[dict[int, str], set[int]]:
        statuses, listed = walk()
        captured[:] = [statuses]
        return statuses, listed

    monitor.walk = capturing_walk  # type: ignore[method-assign]
    samples = zombies_checked = zombies_missed = live_checked = live_missed = 0
    end = time.monotonic() + plan.churn_seconds
    try:
        while time.monotonic() < end:
            before = descendants(scan_proc(), pid)
            monitor.sample()
            zombies = monitor.zombies.keys()  # the zombies present at that sample
            after = descendants(scan_proc(), pid)
            samples += 1
            statuses = captured[0]
            for child, (state, start) in before.items():
                if after.get(child) != (state, start):
                    continue  # changed during the sample: either answer is right
                if state == "Z":
                    zombies_checked += 1
                    zombies_missed += child not in zombies
                else:
                    live_checked += 1
                    live_missed += statuses.get(child, psutil.STATUS_ZOMBIE) == psutil.STATUS_ZOMBIE
    finally:
        procs.stop(farm)
    forks = monitor.stats.zombies_seen
    table.add(
        Row(
            "3",
            "monitor exactness under fork churn: zombies missed",
            f"{zombies_missed} of {zombies_checked:,}",
            f"full /proc scan before and after each of {samples:,} samples",
            target="0 misses",
            met=zombies_missed == 0,
            notes=f"{forks:,} distinct zombies seen; a parent forks every 0.5 ms,"
            " children live 0-10 ms, collected every 20 ms",
        )
    )
    table.add(
        Row(
            "3",
            "monitor exactness under fork churn: live children missed",
            f"{live_missed} of {live_checked:,}",
            "the same scans",
            target="0 misses",
            met=live_missed == 0,
        )
    )
