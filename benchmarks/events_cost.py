"""Where the event monitor's CPU goes while it follows a fork flood (#14):
per thread, per child, for each reader (zombiewatch/_feeds.py).

    python benchmarks/events_cost.py [CONNECTIONS] [ROUNDS]   # 20,000 and 3; ~1 min

Builds the C fork server and the C epoll flooder (benchmarks/c), starts
the server, and for each round and each reader (the native pump's thread,
then Python's) makes an ``EventMonitor`` on it in this process, measures
each thread's CPU (``/proc/self/task/TID/schedstat``, nanoseconds) over
one second idle and then over a flood of CONNECTIONS connections, 50 at a
time. Prints, per reader: the watcher's CPU per child during the flood,
the same less the idle rate (what a child adds), the share spent in the
monitor's Python thread, the share spent in the kernel (system time, all
the monitor's threads: ``stime`` of ``/proc/self/task/TID/stat``, in clock
ticks), wake-ups per child, and the reaps timed exactly.
Bounded: the flood stops at its count or after 60 s; the server is
stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from zombiewatch import _feeds
from zombiewatch.events import EventMonitor

C = Path(__file__).resolve().parent / "c"


def cpu_by_thread() -> dict[str, float]:
    """Seconds on a CPU of each thread of this process, from schedstat."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0]) / 1e9
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return out


def system_by_thread() -> dict[str, float]:
    """Seconds in the kernel (stime, in clock ticks) of each thread of this process."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[12]) / tick  # stime: field 15 of stat, 13 after the name
        except FileNotFoundError:
            pass
    return out


def spent(before: dict[str, float], after: dict[str, float], skip: str) -> dict[str, float]:
    return {t: after[t] - before.get(t, 0.0) for t in after if t != skip}


def one_round(server: int, port: int, flooder: str, connections: int) -> dict[str, float]:
    main = str(threading.get_native_id())
    monitor = EventMonitor(server, interval=0.01)
    monitor.start()
    thread = monitor._thread  # the monitor's Python thread
    assert thread is not None
    watcher = str(thread.native_id)
    try:
        time.sleep(0.2)
        a = cpu_by_thread()
        time.sleep(1.0)
        b = cpu_by_thread()
        idle = sum(spent(a, b, main).values())
        seen0 = monitor.stats.zombies_seen
        wakes0 = monitor._feed.wakeups
        k0 = system_by_thread()
        t0 = time.monotonic()
        subprocess.run(
            [flooder, "127.0.0.1", str(port), str(connections), "50", "60"],
            check=True,
            capture_output=True,
        )
        monitor.sample()
        c = cpu_by_thread()
        k1 = system_by_thread()
        elapsed = time.monotonic() - t0
        flood = spent(b, c, main)
        children = monitor.stats.zombies_seen - seen0
        exact = monitor.stats.lifetimes_closed / max(1, monitor.stats.zombies_seen)
        total = sum(flood.values())
        return {
            "per_child_us": total / children * 1e6,
            "added_us": (total - idle * elapsed) / children * 1e6,
            "python_us": flood.get(watcher, 0.0) / children * 1e6,
            "kernel_us": sum(spent(k0, k1, main).values()) / children * 1e6,
            "wakeups": (monitor._feed.wakeups - wakes0) / children,
            "exact": exact,
            "idle_share": idle,
        }
    finally:
        monitor.stop()
        monitor.close()


def main() -> None:
    connections = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cc = shutil.which("cc")
    if cc is None:
        sys.exit("needs a C compiler (cc) for the fork server and the flooder")
    with tempfile.TemporaryDirectory() as tmp:
        tools = {}
        for name in ("fork_server", "epoll_flood"):
            tools[name] = os.path.join(tmp, name)
            subprocess.run([cc, "-O2", "-o", tools[name], str(C / f"{name}.c")], check=True)
        server = subprocess.Popen([tools["fork_server"], "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            port = int(json.loads(server.stdout.readline())["port"])
            readers = {"native": "1", "python": "0"}
            if _feeds._pump is None:
                del readers["native"]
                print("native: skipped, zombiewatch._pump was not built")
            results: dict[str, list[dict[str, float]]] = {r: [] for r in readers}
            for _ in range(rounds):
                for reader, env in readers.items():
                    os.environ["ZOMBIEWATCH_NATIVE"] = env
                    flood = one_round(server.pid, port, tools["epoll_flood"], connections)
                    results[reader].append(flood)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{connections:,} connections a round, {rounds} rounds, median of rounds:")
    for reader, rs in results.items():

        def med(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        print(
            f"  {reader}: {med('per_child_us'):.1f} µs of CPU per child"
            f" ({med('added_us'):.1f} above the idle rate of {med('idle_share'):.1%} of a core;"
            f" {med('python_us'):.1f} in the monitor's Python thread;"
            f" {med('kernel_us'):.1f} in the kernel, all threads),"
            f" {med('wakeups'):.2f} wake-ups per child, {med('exact'):.1%} of reaps timed exactly"
        )


if __name__ == "__main__":
    main()
