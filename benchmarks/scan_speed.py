"""Measure ``zombiewatch scan`` against ``ps -eo pid,ppid,stat`` on a crowded machine (#6).

For each size (1,000 and 10,000 by default) a helper process forks that many
children that sleep in ``pause()``, plus a few that exit at once and stay
zombies (so the scan has parents to describe). Then, in one run and
interleaved (the order rotates every round, so whatever else the machine
does hits every contender alike), it times:

- ``ps -eo pid,ppid,stat``, the tool people reach for;
- ``zombiewatch scan --json``, a fresh process: interpreter and import
  start-up included, as a user or a cron job sees it;
- ``zombiewatch --version``, that start-up alone, to show what is fixed cost;
- ``scan.scan()`` in this process: the scan itself;
- ``psutil.process_iter`` + ``status()``, the obvious way, for scale.

It prints the median of ``--rounds`` (at least 3) of each, per-process
costs, and ratios to ``ps``. Limits are checked first (``pid_max``,
``threads-max``, ``RLIMIT_NPROC``, the cgroup's ``pids.max``); a size the
machine cannot hold is skipped with the reason, never forced. Everything the
benchmark starts is killed and collected before the next size, within a
bounded time, also on Ctrl-C; children die with the helper if it is killed
(PR_SET_PDEATHSIG).

Not part of the test suite: a timing is a measurement, not an assertion.

    python benchmarks/scan_speed.py [--sizes 1000,10000] [--rounds 5] [--zombies 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from zombiewatch import scan as scanner

# The helper runs under `python -I -S` (no site, few modules), so each fork
# copies little and costs a few hundred microseconds (part 0 of bench.py
# measures it: about 400 µs here).
HELPER = r"""
import ctypes, os, signal, sys
sleepers, zombies = int(sys.argv[1]), int(sys.argv[2])
prctl = ctypes.CDLL(None, use_errno=True).prctl
me = os.getpid()
kids = []
error = ""
for i in range(sleepers + zombies):
    try:
        pid = os.fork()
    except OSError as err:  # EAGAIN at a process limit: stop, report, clean up
        error = str(err)
        break
    if pid == 0:
        try:
            if i < sleepers:
                prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the helper
                if os.getppid() == me:
                    signal.pause()
        finally:
            os._exit(0)
    kids.append(pid)
print(len(kids), error, flush=True)
sys.stdin.read()  # until the benchmark closes the pipe
for pid in kids[:sleepers]:
    os.kill(pid, signal.SIGKILL)
for pid in kids:
    os.waitpid(pid, 0)
"""

CLEANUP_TIMEOUT = 120.0


def read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_pids_max() -> int | None:
    """The pids.max of this process's cgroup (v2 or v1), or None if unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            found = read_int(f"/sys/fs/cgroup{path}/pids.max")
        elif "pids" in controllers.split(","):
            found = read_int(f"/sys/fs/cgroup/pids{path}/pids.max")
        else:
            continue
        if found is not None:
            return found
    return None


def room_for(extra: int) -> str | None:
    """Say why the machine cannot hold ``extra`` more processes, or None.

    Raises the soft RLIMIT_NPROC up to the hard one if that is all it takes.
    """
    now = len(psutil.pids())
    need = now + extra + 200  # the benchmark, ps, the CLI, and the others' headroom
    pid_max = read_int("/proc/sys/kernel/pid_max") or 32768
    threads_max = read_int("/proc/sys/kernel/threads-max") or need
    cgroup = cgroup_pids_max()
    for name, limit in (("pid_max", pid_max), ("threads-max", threads_max), ("pids.max", cgroup)):
        if limit is not None and need > limit:
            return f"{name} is {limit}, {need} needed ({now} processes now)"
    if os.geteuid() != 0:  # root is not held to RLIMIT_NPROC
        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"].real == os.getuid())
        want = mine + extra + 100
        if soft != resource.RLIM_INFINITY and want > soft:
            if hard != resource.RLIM_INFINITY and want > hard:
                return f"RLIMIT_NPROC is {soft} (hard {hard}); {want} needed"
            resource.setrlimit(resource.RLIMIT_NPROC, (want, hard))
    return None


class Crowd:
    """``sleepers`` paused processes and ``zombies`` zombies under one helper."""

    def __init__(self, sleepers: int, zombies: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", HELPER, str(sleepers), str(zombies)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        started = time.monotonic()
        line = self.proc.stdout.readline().split(maxsplit=1)
        if not line:
            self.close()
            raise RuntimeError("the helper died before it started its children")
        self.started = int(line[0])
        self.fork_time = time.monotonic() - started
        if self.started < sleepers + zombies:
            self.close()
            raise RuntimeError(f"only {self.started} processes started: {line[1:]}")
        self.pid = self.proc.pid

    def close(self) -> None:
        """Kill and collect everything, within CLEANUP_TIMEOUT."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()  # the helper kills and reaps its children
        except BrokenPipeError:
            pass  # it is gone already
        try:
            self.proc.wait(timeout=CLEANUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Last resort: its children die with it (PDEATHSIG) and go to init.
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(args: list[str], ok: tuple[int, ...] = (0,)) -> Callable[[], object]:
    def call() -> None:
        proc = subprocess.run(args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if proc.returncode not in ok:
            raise RuntimeError(f"{args} exited with {proc.returncode}")

    return call


def psutil_way() -> int:
    zombies = 0
    for proc in psutil.process_iter():
        try:
            zombies += proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return zombies


CONTENDERS: dict[str, Callable[[], object]] = {
    "ps -eo pid,ppid,stat": run(["ps", "-eo", "pid,ppid,stat"]),
    "zombiewatch scan --json": run([sys.executable, "-m", "zombiewatch", "scan", "--json"], (0, 1)),
    "  start-up (--version)": run([sys.executable, "-m", "zombiewatch", "--version"]),
    "scan.scan() in-process": scanner.scan,
    "psutil process_iter+status": psutil_way,
}


def check(crowd: Crowd, zombies: int) -> int:
    """Check that the CLI finds the helper's zombies; return the processes it scanned."""
    proc = subprocess.run(
        [sys.executable, "-m", "zombiewatch", "scan", "--json", "--parent", str(crowd.pid)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(proc.stdout)
    counts = [p["count"] for p in data["parents"]]
    if counts != [zombies] or proc.returncode != 1:
        raise RuntimeError(f"scan found {counts} zombies under the helper, not [{zombies}]")
    return int(data["processes"])


def measure(extra: int, zombies: int, rounds: int) -> None:
    why = room_for(extra + zombies) if extra else None
    if why:
        print(f"\n{extra:,} extra processes: skipped: {why}")
        return
    crowd = Crowd(extra, zombies) if extra else None
    try:
        processes = check(crowd, zombies) if crowd else len(psutil.pids())
        fork = f", started in {crowd.fork_time:.1f} s" if crowd else ""
        print(f"\n{extra:,} extra processes ({processes:,} on the machine{fork}):")
        names = list(CONTENDERS)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(timed(CONTENDERS[name]))
        ps = statistics.median(times[names[0]])
        print(f"  {'':28} {'median ms':>10} {'µs/process':>11} {'vs ps':>7}")
        for name in names:
            med = statistics.median(times[name])
            per = med / processes * 1e6
            print(f"  {name:28} {med * 1000:10.1f} {per:11.1f} {med / ps:6.2f}x")
    finally:
        if crowd is not None:
            crowd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0,1000,10000", help="extra processes per step")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (at least 3)")
    parser.add_argument("--zombies", type=int, default=50, help="zombies under the helper")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds = max(3, args.rounds)
    print(
        f"zombiewatch scan vs ps: median of {rounds} interleaved rounds;"
        f" {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, psutil {psutil.__version__}"
    )
    print(
        "ratios below 1 are faster than ps; the CLI's time includes interpreter and"
        " import start-up, shown on its own line"
    )
    for size in sizes:
        measure(size, args.zombies, rounds)


if __name__ == "__main__":
    main()
