"""Soak `zombiewatch watch` for minutes: is its memory flat, its CPU small?

    python benchmarks/watch_soak.py [--minutes 3] [--interval 0.01]

Starts a churning parent (forks a child every 5 ms and collects it, and
leaks one zombie every 2 s, as a slow leak would), watches it with
`zombiewatch watch PID --duration`, and samples the watcher's RSS and CPU
time every 10 s. Prints a table and the verdict line; not run by the tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time

import psutil

CHURN = textwrap.dedent(
    """
    import os, sys, time
    leaked = []
    last_leak = time.monotonic()
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        if time.monotonic() - last_leak >= 2.0:
            leaked.append(pid)  # never waited for: a slow leak
            last_leak = time.monotonic()
        else:
            os.waitpid(pid, 0)
        time.sleep(0.005)
    for pid in leaked:
        os.waitpid(pid, 0)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args()
    seconds = args.minutes * 60
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(seconds + 30)])
    watcher = subprocess.Popen(
        [sys.executable, "-m", "zombiewatch", "watch", str(churn.pid), "--duration",
         str(seconds), "--interval", str(args.interval), "--settle", "0.5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc = psutil.Process(watcher.pid)
    print(f"{'t (s)':>6} {'rss (MiB)':>10} {'cpu (s)':>8} {'cpu %':>6}")
    start = time.monotonic()
    last_cpu, last_t = 0.0, start
    try:
        while watcher.poll() is None:
            time.sleep(10)
            try:
                rss = proc.memory_info().rss / 2**20
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                break
            cpu, now = times.user + times.system, time.monotonic()
            share = 100 * (cpu - last_cpu) / (now - last_t)
            print(f"{now - start:6.0f} {rss:10.1f} {cpu:8.1f} {share:6.1f}", flush=True)
            last_cpu, last_t = cpu, now
        out, _ = watcher.communicate(timeout=60)
    finally:
        for p in (watcher, churn):
            if p.poll() is None:
                p.kill()
            p.wait()
    print(
        "\n".join(
            line
            for line in out.splitlines()
            if line.split()[:1] in (["zombies"], ["growth"], ["verdict"], ["lifetime"])
        )
    )


if __name__ == "__main__":
    main()
