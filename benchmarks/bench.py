"""zombiewatch's own costs, side by side with their baselines (#8).

    python benchmarks/bench.py            # full run, about 6 minutes on 2 cores
    python benchmarks/bench.py --quick    # about 1 minute

Prints one table and writes it, with the machine facts, between the markers
of ``docs/BENCHMARKS.md`` (the text around them is kept). Seven parts, one
file each:

0. anatomy (``part_anatomy.py``): what a fork costs a bare interpreter and
   one that has imported ``zombiewatch.server`` or ``socketserver``;
1. server (``part_server.py``): connections per second of each reaping
   mode against the C fork server, ``socketserver.ForkingTCPServer``
   (backlog 1024 and as shipped with 5) and ``ThreadingTCPServer``, all
   driven by the C epoll flooder with 50 concurrent clients;
2. flooder (``part_flooder.py``): zombiewatch's flooder against the C
   flooder, both against the C server (and against the ``sigchld`` server:
   never the bottleneck);
3. monitor (``part_monitor.py``, ``part_exactness.py``): time per sample
   with 10 to 5,000 children (half zombies) on a host with few and with
   10,000 unrelated processes, against a plain ``psutil`` loop; and a
   cross-check against full ``/proc`` scans while a parent forks and
   collects children all the time;
4. reap (``part_reap.py``): zombie lifetimes in ``sigchld``, ``pidfd`` and
   ``reaper-thread`` under the runner, beside the sampling interval and the
   C server watched the same way;
5. overhead (``part_overhead.py``): a server's rate with and without
   ``zombiewatch watch`` sampling it;
6. events (``part_events.py``): the same with ``--observe events`` beside
   ``--observe sample``: the watcher's CPU per child, the share of reaps
   observed exactly, exact lifetimes (#14).

Every figure is a ratio to a baseline measured in the same run, the two
interleaved (A B A B ...), the median of at least three rounds, because the
machine is shared and noisy. The C sources under ``benchmarks/c`` are built
with ``cc -O2`` into a temporary directory; without a compiler the C
columns are skipped (``--no-cc`` forces that). Everything is bounded in
count and time and stays on loopback. Every process started here runs in
its own session and is stopped with its group at the end; this process is
a child subreaper, so orphans come here and are collected. What the parts
share (the table, the processes, the flooders) is in ``_harness.py``.

Not part of the test suite: a timing is a measurement, not an assertion.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _harness import (
    DOC,
    FULL,
    QUICK,
    ROOT,
    BenchError,
    Plan,
    Procs,
    Table,
    Tools,
    build_c,
    machine_facts,
    prepare_run,
    scan_proc,
    write_doc,
)
from part_anatomy import part_anatomy
from part_events import part_events
from part_flooder import part_flooder
from part_monitor import part_monitor
from part_overhead import part_overhead
from part_reap import part_reap
from part_server import part_server

PARTS: dict[str, Callable[[Table, Procs, Tools, Plan], None]] = {
    "anatomy": part_anatomy,
    "server": part_server,
    "flooder": part_flooder,
    "monitor": part_monitor,
    "reap": part_reap,
    "overhead": part_overhead,
    "events": part_events,
}


def zombies_of(pids: set[int]) -> list[str]:
    """Zombies on the host whose parent is one of ``pids``."""
    found = []
    for pid, (ppid, state, _start) in scan_proc().items():
        if state == "Z" and ppid in pids:
            found.append(f"{pid} (parent {ppid})")
    return found


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """The options, and the parts to run in the order given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer modes and sizes, shorter")
    parser.add_argument("--no-cc", action="store_true", help="skip the C programs")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts (default: all of {','.join(PARTS)})",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")
    if not sys.platform.startswith("linux"):
        parser.error("the benchmark reads /proc: Linux only")
    return args, parts


def run_parts(parts: list[str], plan: Plan, no_cc: bool, table: Table) -> tuple[Tools, int]:
    """Run ``parts`` into ``table``; return the tools used and the exit status.

    A part that cannot measure leaves a note and the others still run; every
    process started is stopped, and every zombie left is noted, even after
    Ctrl-C or SIGTERM.
    """
    with tempfile.TemporaryDirectory(prefix="zombiewatch-bench-") as tmp:
        workdir = Path(tmp)
        procs = Procs(workdir)
        tools = Tools(workdir)
        status = 0
        try:
            build_c(tools, no_cc)
            if not tools.has_c:
                table.notes.append("no C compiler (or --no-cc): the C columns are skipped")
            for name in parts:
                try:
                    PARTS[name](table, procs, tools, plan)
                except BenchError as err:
                    table.notes.append(f"{name}: could not measure: {err}")
                    print(f"  {name}: could not measure: {err}", file=sys.stderr)
        except KeyboardInterrupt:
            status = 130
        finally:
            procs.stop_all()
        left = zombies_of({os.getpid()})
        if left:
            table.notes.append(f"zombies left behind by this run: {', '.join(left)}")
    return tools, status


def main() -> None:
    """Run the benchmark, print the table, write docs/BENCHMARKS.md."""
    args, parts = parse_args()
    plan = QUICK if args.quick else FULL
    started, load_start = time.monotonic(), os.getloadavg()
    prepare_run()
    table = Table()
    tools, status = run_parts(parts, plan, args.no_cc, table)
    mode = "--quick" if args.quick else "full"
    facts = machine_facts(tools, started, load_start)
    section = "\n".join(
        [
            f"Command: `python benchmarks/bench.py{' --quick' if args.quick else ''}`"
            f" ({mode} run).",
            "",
            *facts,
            "",
            table.markdown(),
            "",
            *(f"- {note}" for note in table.notes),
        ]
    )
    print()
    print(section)
    if status:
        sys.exit(status)
    if not args.no_write and parts == list(PARTS):
        write_doc(section)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
