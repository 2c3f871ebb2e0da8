"""Price the server changes that docs/BENCHMARKS.md still proposes (#8).

    python benchmarks/proposals.py [--quick]

Each proposal is a prototype patched in at run time (this file edits no
project code) and measured against the current server in ``sigchld`` mode,
driven by the C epoll flooder, interleaved (A B A B ...), median of the
rounds, the same way as ``benchmarks/bench.py``, with its harness
(``_harness.py``).
Each variant is shown with its page faults per connection (parent, and
children collected), the currency a fork server pays in. Prints one table;
writes nothing.

- P4: ``gc.freeze()`` before serving.
- The ceiling: the same server whose workers close the connection at once
  without answering (completions per second, not answers): what no change
  to the worker can beat.

The proposals priced here before (P1 lean worker I/O, P2 accept the whole
backlog per wakeup, P3 no flush per fork, M1 the kept-descriptor monitor,
F2 the selector flooder) have landed; docs/BENCHMARKS.md keeps what they
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    CLK_TCK,
    FULL,
    PY,
    QUICK,
    UNTIL_DEADLINE,
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    build_c,
    cpu_ticks,
    fault_counts,
    flood,
    fmt_rate,
    machine_facts,
    median,
    prepare_run,
    ratio_of,
    rotate,
)

# -- server prototypes ------------------------------------------------------------

# Runs zombiewatch.server with a set of patches: argv = CONFIG PATCH[,PATCH...]
SERVER_LAUNCHER = r"""
import gc, sys
from zombiewatch import server as S

patches = set(filter(None, sys.argv[2].split(",")))

if "exit-at-once" in patches:
    # The ceiling: a worker that closes its connection and exits.
    def serve_worker(self, conn):
        conn.close()
    S.Server.serve_worker = serve_worker

if "gc-freeze" in patches:
    # Move everything allocated at start-up out of the collector's reach, so
    # no collection in the parent (one every ~700 allocations) walks, and
    # so writes to, the pages it shares with live children.
    orig_serve = S.Server.serve_forever

    def serve_forever(self):
        gc.collect()
        gc.freeze()
        orig_serve(self)

    S.Server.serve_forever = serve_forever

S.main([sys.argv[1]])
"""

SERVER_VARIANTS = [
    ("current `sigchld` server", ""),
    ("P4 gc.freeze() before serving", "gc-freeze"),
]


def measure_proto_server(
    procs: Procs, tools: Tools, patches: str, seconds: float
) -> tuple[float, float, float, float, float]:
    """(answers/s, completions/s, parent faults, children faults, CPU µs) per connection."""
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    proc = procs.start([PY, "-c", SERVER_LAUNCHER, config, patches])
    try:
        info = procs.ready(proc)
        port, pid = int(info["port"]), int(info["pid"])
        flood(tools, port, 100, 1.5)
        f0, c0 = fault_counts(pid), cpu_ticks(pid)
        result = flood(tools, port, UNTIL_DEADLINE, seconds)
        f1, c1 = fault_counts(pid), cpu_ticks(pid)
    finally:
        procs.stop(proc)
    done = max(result.ok + result.failed, 1)
    completions = result.rate * done / max(result.ok, 1) if result.ok else done / seconds
    cpu = (c1[0] - c0[0] + c1[1] - c0[1]) * 1e6 / CLK_TCK / done
    return result.rate, completions, (f1[0] - f0[0]) / done, (f1[1] - f0[1]) / done, cpu


def part_server(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("server", flush=True)
    variants = [*SERVER_VARIANTS, ("ceiling: workers exit without answering", "exit-at-once")]
    runs: dict[str, list[tuple[float, float, float, float, float]]] = {v[0]: [] for v in variants}
    for rnd in range(plan.rounds):
        for name, patches in rotate(variants, rnd):
            runs[name].append(measure_proto_server(procs, tools, patches, plan.server_seconds))
    base_name = variants[0][0]
    base = [r[0] for r in runs[base_name]]
    for name, _patches in variants:
        rs = runs[name]
        ceiling = name.startswith("ceiling")
        rates = [r[1] if ceiling else r[0] for r in rs]
        notes = (
            f"page faults per connection: parent {median([r[2] for r in rs]):.0f},"
            f" children {median([r[3] for r in rs]):.0f}; CPU {median([r[4] for r in rs]):,.0f}"
            " µs per connection"
        )
        what = f"{name}{' (completions/s)' if ceiling else ''}"
        if name == base_name:
            table.add(Row("S", what, fmt_rate(median(rates)), "(the baseline)", notes=notes))
        else:
            table.add(
                Row(
                    "S",
                    what,
                    fmt_rate(median(rates)),
                    f"current {fmt_rate(median(base))}",
                    ratio_of(rates, base),
                    notes=notes,
                )
            )


def main() -> None:
    """Measure each prototype against the current code; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started, load = time.monotonic(), os.getloadavg()
    prepare_run()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="zombiewatch-proposals-") as tmp:
        procs, tools = Procs(Path(tmp)), Tools(Path(tmp))
        try:
            build_c(tools, no_cc=False)
            part_server(table, procs, tools, plan)
        except KeyboardInterrupt:
            sys.exit(130)
        finally:
            procs.stop_all()
        facts = machine_facts(tools, started, load)
    print()
    print("\n".join([*facts, "", table.markdown(), "", *(f"- {n}" for n in table.notes)]))


if __name__ == "__main__":
    main()
