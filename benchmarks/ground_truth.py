"""The event monitor against the built-in server's own record of each child
(#14, ``--ground-truth``; zombiewatch/_record.py).

For each reaping mode, each load and each reader, runs

    zombiewatch --mode M --connections N --observe events --ground-truth --json

and prints one table row from its ``ground_truth`` figures, in µs,
p50/p99: the reap the monitor saw against the server's ``waitpid``; the
child's teardown after its last line, by its own times (on a CPU and
waiting for one: ``_record.zombie_from``); the kernel's exit event against
the end of that teardown; the lifetime error (the monitor's lifetime
against the record's); and the same error with the record's lifetime taken
from the child's last line. Two loads:

- ``flood``: the default flood, 50 clients at once and children exiting in
  bursts (``--child-delay`` 0.02 s): both cores busy;
- ``one``: one client at a time and each child exiting as soon as it has
  answered (``--concurrency 1 --child-delay 0``): a core left free.

Readers: ``native`` (zombiewatch._pump's thread) and ``python``
(``ZOMBIEWATCH_NATIVE=0``). Rounds interleave every row, so whatever else
the machine does hits each alike; a row's figure is the median over its
rounds. Each run is bounded by its connection count and ``--timeout``.

    python benchmarks/ground_truth.py [--connections 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

MODES = ("sigchld", "pidfd", "reaper-thread")
LOADS = {
    "flood": [],
    "one": ["--concurrency", "1", "--child-delay", "0"],
}
READERS = {"native": "1", "python": "0"}


def one_run(mode: str, load: str, reader: str, connections: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "zombiewatch", "--mode", mode, "--connections",
            str(connections), "--observe", "events", "--ground-truth", "--settle", "2",
            "--json", *LOADS[load]]  # fmt: skip
    env = dict(os.environ, ZOMBIEWATCH_NATIVE=READERS[reader])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])}: exit {proc.returncode}: {proc.stderr.strip()}")
    run = json.loads(proc.stdout)["runs"][0]
    if run["observe"]["reader"] != reader:
        raise SystemExit(f"asked for the {reader} reader, {run['observe']['reader']} ran")
    truth: dict[str, Any] = run["ground_truth"]
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [(m, lo, r) for m in MODES for lo in LOADS for r in READERS]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {row: [] for row in rows}
    for n in range(args.rounds):
        print(f"round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for row in rows:
            runs[row].append(one_run(*row, args.connections))

    def figure(row: tuple[str, str, str], key: str) -> str:
        p50 = statistics.median(t[key]["p50"] for t in runs[row])
        p99 = statistics.median(t[key]["p99"] for t in runs[row])
        return f"{p50:,.1f} / {p99:,.0f}"

    print(f"{args.connections} connections, {args.rounds} rounds; µs, p50 / p99 (median of rounds)")
    print()
    print("| mode | load | reader | missed | timed exactly | reap seen after the server's"
          " `waitpid` | teardown | exit event after the teardown | lifetime error |"
          " error from the last line |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | --- | --- | --- | --- | --- |")
    for row in rows:
        ts = runs[row]
        missed = sum(t["missed"] for t in ts)
        exact = sum(t["exact"] for t in ts) / sum(t["complete"] for t in ts)
        print(f"| `{row[0]}` | {row[1]} | {row[2]} | {missed} | {exact:.1%} | "
              f"{figure(row, 'reap_error_us')} | {figure(row, 'teardown_us')} | "
              f"{figure(row, 'exit_after_teardown_us')} | {figure(row, 'error_us')} | "
              f"{figure(row, 'error_from_last_line_us')} |")  # fmt: skip


if __name__ == "__main__":
    main()
