"""Part 5 of ``bench.py``: what watching costs the watched. A server's rate
with and without ``zombiewatch watch`` sampling it every 10 ms, the two
interleaved on one server, and how much of a core the watcher used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import psutil
from _harness import (
    PY,
    UNTIL_DEADLINE,
    BenchError,
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    X,
    flood,
    fmt_rate,
    median,
    ratio_of,
    rotate,
)


def watched_servers(tools: Tools, plan: Plan) -> list[tuple[str, list[str]]]:
    """The servers a watcher's cost is measured on: ours in ``sigchld`` mode,
    and the C fork server where it was built (and the plan asks for it)."""
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    servers = [("zombiewatch `sigchld`", [PY, "-m", "zombiewatch.server", config])]
    if plan.overhead_on_c and tools.fork_server:
        servers.append(("C fork server", [tools.fork_server]))
    return servers


def part_overhead(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("5. overhead of watching", flush=True)
    for name, argv in watched_servers(tools, plan):
        plain, watches = interleaved(procs, tools, plan, argv, ("sample",))
        ws = watches["sample"]
        ratio = ratio_of([w.rate for w in ws], plain)
        samples = [float(w.run["samples"]) for w in ws if w.run and "samples" in w.run]
        table.add(
            Row(
                "5",
                f"{name} watched by `zombiewatch watch` (10 ms)",
                fmt_rate(median([w.rate for w in ws])),
                f"unwatched {fmt_rate(median(plain))}",
                ratio,
                f"≥ 0.95{X} (< 5% lower)",
                ratio >= 0.95,
                notes=f"the watcher used {median([w.share for w in ws]):.0%} of one core;"
                f" {median(samples) if samples else 0:,.0f} samples per watch;"
                f" {plan.overhead_rounds} rounds of {plan.overhead_seconds:g} s",
            )
        )


def interleaved(
    procs: Procs, tools: Tools, plan: Plan, argv: list[str], methods: tuple[str, ...]
) -> tuple[list[float], dict[str, list[Watch]]]:
    """Start the server ``argv`` and flood it unwatched and watched by each of
    ``methods`` (``--observe``) in turn, rotated each round; return the
    unwatched rates and the watched floods by method."""
    plain: list[float] = []
    watches: dict[str, list[Watch]] = {method: [] for method in methods}
    server = procs.start(argv)
    try:
        info = procs.ready(server)
        port, pid = int(info["port"]), int(info.get("pid", server.pid))
        flood(tools, port, 200, 2.0)  # warm-up
        for rnd in range(plan.overhead_rounds):
            for method in rotate([None, *methods], rnd):
                if method is None:
                    plain.append(flood(tools, port, UNTIL_DEADLINE, plan.overhead_seconds).rate)
                else:
                    watches[method].append(
                        watched(procs, tools, port, pid, plan.overhead_seconds, method)
                    )
    finally:
        procs.stop(server)
    return plain, watches


@dataclass
class Watch:
    """One flood under ``zombiewatch watch``: what it cost and what it saw."""

    rate: float  # the server's connections per second
    cpu: float  # the watcher's CPU seconds during the flood
    share: float  # the same per second of flood: the share of one core
    run: dict[str, Any] | None  # the watcher's JSON report, if it could be read


# A method of part 6 that is not an --observe value: events read by the
# monitor's own thread instead of zombiewatch._pump's (zombiewatch/_feeds.py).
PYTHON_READER = "events-python"


def watched(procs: Procs, tools: Tools, port: int, pid: int, seconds: float, observe: str) -> Watch:
    """Flood the server on ``port`` for ``seconds`` while ``zombiewatch watch
    --observe OBSERVE`` watches ``pid`` (``PYTHON_READER``: events, read in
    Python)."""
    env = None
    if observe == PYTHON_READER:
        observe, env = "events", {**os.environ, "ZOMBIEWATCH_NATIVE": "0"}
    argv = [PY, "-m", "zombiewatch", "watch", str(pid), "--json", "--observe", observe]
    watcher = procs.start([*argv, "--interval", "0.01", "--settle", "0"], env=env)
    try:
        wait_sampling(watcher.pid)
        cpu0, t0 = sum(psutil.Process(watcher.pid).cpu_times()[:2]), time.monotonic()
        rate = flood(tools, port, UNTIL_DEADLINE, seconds).rate
        cpu = sum(psutil.Process(watcher.pid).cpu_times()[:2]) - cpu0
        share = cpu / (time.monotonic() - t0)
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=30)
        run = None
        with contextlib.suppress(json.JSONDecodeError, KeyError, IndexError):
            run = dict(json.loads(out)["runs"][0])
        return Watch(rate, cpu, share, run)
    finally:
        procs.stop(watcher)


def wait_sampling(pid: int) -> None:
    """Wait until ``zombiewatch watch`` runs its sampling thread."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).num_threads() >= 2:
                time.sleep(0.05)  # its first samples
                return
        time.sleep(0.02)
    raise BenchError("zombiewatch watch did not start sampling")
