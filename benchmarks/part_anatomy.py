"""Part 0 of ``bench.py``: what the forking parent carries. The time of one
fork, ``_exit`` and ``waitpid`` in a bare ``python -I -S``, in a parent that
has imported ``zombiewatch.server`` (as the server runs) and in one that has
imported ``socketserver`` (as ``ForkingTCPServer``'s parent does), with the
modules and anonymous memory each fork has to copy.
"""

from __future__ import annotations

import subprocess

from _harness import PY, Plan, Procs, Row, Table, Tools, median, ratio_of, rotate

# Runs in a fresh interpreter: times n fork + _exit + waitpid round trips, then
# prints microseconds per round trip, modules loaded and anonymous RSS in kB.
FORK_RT = """
import os, sys, time
n = 400
t = time.perf_counter()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
us = (time.perf_counter() - t) / n * 1e6
with open("/proc/self/status") as f:
    rss = [int(l.split()[1]) for l in f if l.startswith("RssAnon:")][0]
print(us, len(sys.modules), rss)
"""


def part_anatomy(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("0. the forking parent", flush=True)
    variants = [
        ("`python -I -S`, nothing imported", [PY, "-I", "-S", "-c", FORK_RT]),
        (
            "`python` + `import zombiewatch.server` (how the server runs)",
            [PY, "-c", "import zombiewatch.server\n" + FORK_RT],
        ),
        (
            "`python` + `import socketserver` (ForkingTCPServer's parent)",
            [PY, "-c", "import socketserver\n" + FORK_RT],
        ),
    ]
    runs: dict[str, list[tuple[float, int, int]]] = {v[0]: [] for v in variants}
    for rnd in range(plan.rounds):
        for name, argv in rotate(variants, rnd):
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=60, cwd=tools.workdir, check=True
            )
            fork_us, mods, rss = out.stdout.split()
            runs[name].append((float(fork_us), int(mods), int(rss)))
    base = [r[0] for r in runs[variants[0][0]]]
    for name, _ in variants:
        rs = runs[name]
        us = [r[0] for r in rs]
        notes = f"{rs[0][1]} modules, anonymous RSS {rs[0][2] / 1024:.1f} MB"
        if name == variants[0][0]:
            table.add(
                Row(
                    "0",
                    f"fork + `_exit` + `waitpid`, {name}",
                    f"{median(us):.0f} µs",
                    "(the baseline)",
                    notes=notes,
                )
            )
        else:
            table.add(
                Row(
                    "0",
                    f"fork + `_exit` + `waitpid`, {name}",
                    f"{median(us):.0f} µs",
                    f"bare {median(base):.0f} µs",
                    ratio_of(us, base),
                    notes=notes,
                )
            )
