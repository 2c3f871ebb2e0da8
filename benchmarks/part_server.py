"""Part 1 of ``bench.py``: connections per second of each reaping mode of
zombiewatch's server, against the C fork server, ``socketserver``'s
``ForkingTCPServer`` (backlog 1024, and as shipped with 5) and
``ThreadingTCPServer``, all driven by the C epoll flooder with 50 concurrent
clients, each server started afresh for every measurement; with the CPU time
and page faults each connection costs the forking parent and its children.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from _harness import (
    CLK_TCK,
    CONCURRENCY,
    HERE,
    PY,
    UNTIL_DEADLINE,
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    X,
    cpu_ticks,
    fault_counts,
    flood,
    fmt_rate,
    median,
    ratio_of,
    rotate,
    rss_kb,
)

from zombiewatch import modes


@dataclass
class ServerVariant:
    name: str
    argv: list[str]
    key: str


def server_variants(tools: Tools, plan: Plan) -> list[ServerVariant]:
    variants = []
    if tools.fork_server:
        variants.append(
            ServerVariant("C fork server (SIGCHLD waitpid loop)", [tools.fork_server], "c")
        )
    for mode in plan.server_modes:
        if not modes.get(mode).available():
            continue
        config = json.dumps({"mode": mode, "child_delay": 0})
        variants.append(
            ServerVariant(f"zombiewatch `{mode}`", [PY, "-m", "zombiewatch.server", config], mode)
        )
    baseline = [PY, str(HERE / "baseline_servers.py")]
    variants += [
        ServerVariant("ForkingTCPServer, backlog 1024", [*baseline, "forking", "1024"], "fts1024"),
        ServerVariant(
            "ForkingTCPServer as shipped (backlog 5)", [*baseline, "forking", "5"], "fts5"
        ),
        ServerVariant("ThreadingTCPServer, backlog 1024", [*baseline, "threading", "1024"], "tts"),
    ]
    return variants


@dataclass
class ServerRun:
    rate: float
    failed: int
    cut: int
    p99_ms: float
    parent_us: float
    children_us: float
    parent_faults: float
    children_faults: float
    rss_kb: int


def measure_server(procs: Procs, tools: Tools, variant: ServerVariant, seconds: float) -> ServerRun:
    proc = procs.start(variant.argv)
    try:
        info = procs.ready(proc)
        port, pid = int(info["port"]), int(info.get("pid", proc.pid))
        rss = rss_kb(pid)
        flood(tools, port, 100, 1.5)  # warm-up: first connections, page cache
        own0, kids0 = cpu_ticks(pid)
        faults0 = fault_counts(pid)
        result = flood(tools, port, UNTIL_DEADLINE, seconds)
        own1, kids1 = cpu_ticks(pid)
        faults1 = fault_counts(pid)
    finally:
        procs.stop(proc)
    done = max(result.ok + result.failed, 1)
    per = 1e6 / CLK_TCK / done
    return ServerRun(
        result.rate,
        result.failed,
        result.cut,
        result.p99_ms,
        (own1 - own0) * per,
        (kids1 - kids0) * per,
        (faults1[0] - faults0[0]) / done,
        (faults1[1] - faults0[1]) / done,
        rss,
    )


def server_notes(key: str, rs: list[ServerRun]) -> str:
    """The notes of a server's row: latency, and what a connection costs it."""
    notes = (
        f"p99 {median([r.p99_ms for r in rs]):,.0f} ms; per conn: parent"
        f" {median([r.parent_us for r in rs]):,.0f} µs CPU,"
        f" {median([r.parent_faults for r in rs]):,.0f} page faults"
    )
    # These collect not all their children (or fork none), so the children's
    # CPU time and faults would say nothing per connection.
    if key not in ("thread", "tts", "none", "ignore", "double-fork", "sigchld-once"):
        notes += (
            f"; children {median([r.children_us for r in rs]):,.0f} µs,"
            f" {median([r.children_faults for r in rs]):,.0f} faults"
        )
    notes += f"; parent RSS {median([r.rss_kb for r in rs]) / 1024:.1f} MB"
    failed = median([r.failed for r in rs])
    if failed:
        cut = median([r.cut for r in rs])
        notes += f"; {failed:,.0f} failed, {cut:,.0f} still open at the deadline"
        if key == "fts5":
            notes += " (listen-queue overflow: reset after 1-2 s)"
    return notes


def part_server(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("1. server", flush=True)
    variants = server_variants(tools, plan)
    runs: dict[str, list[ServerRun]] = {v.key: [] for v in variants}
    for rnd in range(plan.rounds):
        # A B C ... then B C ... A: every variant meets the others' noise.
        for variant in rotate(variants, rnd):
            runs[variant.key].append(measure_server(procs, tools, variant, plan.server_seconds))
        print(f"  round {rnd + 1}: " + ", ".join(f"{k} {r[-1].rate:.0f}" for k, r in runs.items()))
    base_key = "c" if tools.has_c else "fts1024"
    base_name = "C fork server" if tools.has_c else "ForkingTCPServer(1024)"
    base_rates = [r.rate for r in runs[base_key]]
    fts_rates = [r.rate for r in runs["fts1024"]]
    for variant in variants:
        rs = runs[variant.key]
        rates = [r.rate for r in rs]
        notes = server_notes(variant.key, rs)
        fig = fmt_rate(median(rates))
        if variant.key == base_key:
            table.add(Row("1", variant.name, fig, "(the baseline)", notes=notes))
            continue
        row = Row(
            "1",
            variant.name,
            fig,
            f"{base_name} {fmt_rate(median(base_rates))}",
            ratio_of(rates, base_rates),
            notes=notes,
        )
        if variant.key == "sigchld":
            if tools.has_c:
                row.target, row.met = f"≥ 0.25{X}", (row.ratio or 0.0) >= 0.25
            else:  # the baseline is ForkingTCPServer(1024) already
                row.target, row.met = f"≥ 2{X}", (row.ratio or 0.0) >= 2.0
        table.add(row)
        if variant.key == "sigchld" and tools.has_c:
            r2 = ratio_of(rates, fts_rates)
            table.add(
                Row(
                    "1",
                    "zombiewatch `sigchld` vs ForkingTCPServer(1024)",
                    fig,
                    f"ForkingTCPServer(1024) {fmt_rate(median(fts_rates))}",
                    r2,
                    f"≥ 2{X}",
                    r2 >= 2.0,
                )
            )
    table.notes.append(
        f"1: {CONCURRENCY} concurrent clients, one line each, {plan.server_seconds:g} s per"
        f" measurement after 100 warm-up connections, each server started afresh;"
        f" {'the C epoll flooder' if tools.has_c else 'zombiewatch flood (no C compiler)'}"
        " drives all. zombiewatch modes run with `child_delay` 0 (the server's default)."
        " CPU time and minor page faults per connection are the server's own and those"
        " of the children it collected (children's left out where not all are"
        " collected: `none`, `sigchld-once`, `ignore`, `double-fork`; `thread` has"
        " none); CPU time is in 10 ms ticks, so read it as ±5%."
    )
