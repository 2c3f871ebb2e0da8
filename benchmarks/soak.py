"""Soak: 100,000 connections in `sigchld` mode; is memory flat, is nothing lost?

    python benchmarks/soak.py [--connections 100000] [--mode sigchld]

Runs `zombiewatch --mode MODE --connections N --json`, samples the RSS of
the runner and of the server's forking parent every 5 s, and prints both
series, the leaked and failed counts, and the growth of each RSS between
the first and the last quarter of the run. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import psutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--mode", default="sigchld")
    args = parser.parse_args()
    runner = subprocess.Popen(
        [sys.executable, "-m", "zombiewatch", "--mode", args.mode,
         "--connections", str(args.connections), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert runner.stderr is not None
    line = runner.stderr.readline()
    server = psutil.Process(int(line.split("server pid ")[1].split()[0]))
    me = psutil.Process(runner.pid)
    rows = []
    start = time.monotonic()
    print(f"{'t (s)':>6} {'runner MiB':>11} {'server MiB':>11}", flush=True)
    while runner.poll() is None:
        try:
            rows.append((time.monotonic() - start, me.memory_info().rss, server.memory_info().rss))
        except psutil.NoSuchProcess:
            break
        t, r, s = rows[-1]
        print(f"{t:6.0f} {r / 2**20:11.1f} {s / 2**20:11.1f}", flush=True)
        time.sleep(5)
    out, _err = runner.communicate(timeout=120)
    run = json.loads(out)["runs"][0]
    quarter = max(1, len(rows) // 4)
    for name, column in (("runner", 1), ("server", 2)):
        first = statistics.median(row[column] for row in rows[:quarter]) / 2**20
        last = statistics.median(row[column] for row in rows[-quarter:]) / 2**20
        print(f"{name} RSS: first quarter {first:.1f} MiB, last quarter {last:.1f} MiB"
              f" ({last / first:.3f}x)")  # fmt: skip
    keys = ("connections", "ok", "failed", "leaked", "peak_zombies", "conn_per_s", "lifetime_ms")
    print({key: run[key] for key in keys})
    print(f"exit status {runner.returncode}")


if __name__ == "__main__":
    main()
