"""Part 2 of ``bench.py``: zombiewatch's flooder against the C epoll flooder,
both driving the C fork server (where the flooder's own speed shows) and the
``sigchld`` server (where it must merely never be the bottleneck).
"""

from __future__ import annotations

import json

from _harness import (
    PY,
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


def part_flooder(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("2. flooder", flush=True)
    if not tools.has_c:
        table.notes.append("2: skipped: no C compiler, so no C flooder or C server to compare with")
        return
    assert tools.fork_server is not None
    flooders = ["c", "zombiewatch"]
    targets = [("C fork server", [tools.fork_server], plan.flood_connections)]
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    targets.append(
        (
            "zombiewatch `sigchld`",
            [PY, "-m", "zombiewatch.server", config],
            plan.flood_connections_py_server,
        )
    )
    for target_name, argv, connections in targets:
        rates: dict[str, list[float]] = {f: [] for f in flooders}
        proc = procs.start(argv)
        try:
            port = int(procs.ready(proc)["port"])
            flood(tools, port, 200, 2.0)
            for rnd in range(plan.rounds):
                for name in rotate(flooders, rnd):
                    rates[name].append(flood(tools, port, connections, 60.0, name).rate)
        finally:
            procs.stop(proc)
        base = rates["c"]
        table.add(
            Row(
                "2",
                f"C epoll flooder → {target_name}",
                fmt_rate(median(base)),
                "(the baseline)",
                notes=f"{connections:,} connections per measurement",
            )
        )
        for name in flooders[1:]:
            ratio = ratio_of(rates[name], base)
            row = Row(
                "2",
                f"zombiewatch flood → {target_name}",
                fmt_rate(median(rates[name])),
                f"C epoll flooder {fmt_rate(median(base))}",
                ratio,
            )
            if target_name == "C fork server":
                row.target, row.met = f"≥ 0.9{X}", ratio >= 0.9
            else:
                row.target, row.met = f"not the bottleneck (≥ 0.9{X})", ratio >= 0.9
            table.add(row)
