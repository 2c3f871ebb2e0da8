"""Part 3 of ``bench.py``: the time of one monitor sample with 10 to 5,000
children (half of them zombies), on a host with few and with 10,000
unrelated processes, against a plain ``psutil`` loop; then the exactness
check of ``part_exactness.py``. The sample's time should grow with the tree
watched, not with the host.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource

import psutil
from _harness import (
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    X,
    fmt_ms,
    median,
    ratio_of,
    start_farm,
    time_per_call,
)
from part_exactness import part_exactness

from zombiewatch.monitor import Monitor


def host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def process_room() -> tuple[int, str]:
    """How many more processes this machine can take, and what limits it."""
    limits = {}
    with open("/proc/sys/kernel/pid_max") as f:
        limits["pid_max"] = int(f.read())
    with open("/proc/sys/kernel/threads-max") as f:
        limits["threads-max"] = int(f.read())
    soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY:
        limits["RLIMIT_NPROC"] = soft
    with contextlib.suppress(OSError, ValueError), open("/sys/fs/cgroup/pids.max") as f:
        limits["cgroup pids.max"] = int(f.read())
    now = host_processes()
    # Threads count against every limit; leave a quarter of the room free.
    room = min(limits.values()) * 3 // 4 - now - 200
    return room, ", ".join(f"{k} {v:,}" for k, v in limits.items()) + f"; {now} processes now"


def psutil_loop(pid: int) -> tuple[int, int]:
    """The plain way: children() and each child's status(). (live, zombies)."""
    live = zombies = 0
    for child in psutil.Process(pid).children():
        try:
            status = child.status()
        except psutil.NoSuchProcess:
            continue
        if status == psutil.STATUS_ZOMBIE:
            zombies += 1
        else:
            live += 1
    return live, zombies


def time_tree(
    table: Table, procs: Procs, tools: Tools, plan: Plan, size: int
) -> tuple[str, tuple[float, float, float]]:
    """Time a sample of a fresh tree of ``size`` children, half zombies, both ways.

    Returns the host's label and (monitor, psutil loop, how many times faster).
    """
    live, zombies = size - size // 2, size // 2
    tree, pid = start_farm(procs, tools, "tree", str(live), str(zombies), "600")
    try:
        label = f"{host_processes() - size:,} other processes"
        monitor = Monitor(pid)
        first = monitor.sample()
        if (first.live, first.zombies) != (live, zombies):
            table.notes.append(
                f"3: monitor saw {first.live} live + {first.zombies} zombies,"
                f" expected {live} + {zombies} ({size} children, {label})"
            )
        mon, plain = [], []
        for _rnd in range(plan.rounds):
            mon.append(time_per_call(monitor.sample, plan.monitor_budget))
            plain.append(time_per_call(functools.partial(psutil_loop, pid), plan.monitor_budget))
        return label, (median(mon), median(plain), ratio_of(plain, mon))
    finally:
        procs.stop(tree)


def part_monitor(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("3. monitor", flush=True)
    room, limits = process_room()
    largest = max(plan.monitor_sizes)
    unrelated = max(0, min(plan.unrelated, room - largest))
    table.notes.append(f"3: process limits: {limits}.")
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    hosts = [("few", 0), ("busy", unrelated)]
    for host, count in hosts:
        farm = None
        if count:
            farm, _pid = start_farm(procs, tools, "tree", str(count), "0", "600")
        try:
            for size in plan.monitor_sizes:
                label, results[(host, size)] = time_tree(table, procs, tools, plan, size)
                m, p, r = results[(host, size)]
                row = Row(
                    "3",
                    f"monitor sample, {size:,} children, host with {label}",
                    fmt_ms(m),
                    f"psutil children()+status() {fmt_ms(p)}",
                    r,
                    notes="ratio: times faster",
                )
                if host == "busy" and size == 100:
                    row.target = f"≤ 1 ms and ≥ 5{X}"
                    row.met = m <= 0.001 and r >= 5
                table.add(row)
        finally:
            if farm is not None:
                procs.stop(farm)
    if unrelated < plan.unrelated:
        table.notes.append(f"3: only {unrelated:,} unrelated processes fit under the limits")
    add_busy_over_few(table, plan, results)
    part_exactness(table, procs, tools, plan)
    table.notes.append(
        "3: children half live (sleeping), half zombies, of one parent; the monitor's"
        " time is a steady-state `Monitor(pid).sample()` (its first sample, which builds"
        " the psutil.Process cache, is not timed); the psutil loop builds its objects"
        " every time, as a plain script would. Each figure is the median over rounds of"
        " the median call."
    )


def add_busy_over_few(
    table: Table, plan: Plan, results: dict[tuple[str, int], tuple[float, float, float]]
) -> None:
    """One row per size: the sample's time on the busy host over the few-process one."""
    for size in plan.monitor_sizes:
        few, busy = results[("few", size)][0], results[("busy", size)][0]
        row = Row(
            "3",
            f"monitor sample, {size:,} children: busy host / few",
            fmt_ms(busy),
            f"few-process host {fmt_ms(few)}",
            busy / few,
            notes="grows with the tree, not the host",
        )
        if size == 100:
            row.target, row.met = f"≈ 1{X} (≤ 1.25{X})", busy / few <= 1.25
        table.add(row)
