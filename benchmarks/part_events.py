"""Part 6 of ``bench.py``: watching from kernel events against sampling. For
the ``sigchld`` server and the C fork server, floods interleave unwatched,
watched by ``zombiewatch watch --observe events`` (read by the native
extension's thread, and again by the monitor's own Python thread) and by
``--observe sample``: the server's rate under each, the watcher's CPU per
child of the tree, the share of reaps observed exactly, and the exact
lifetimes.
"""

from __future__ import annotations

from typing import Any

from _harness import (
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    X,
    fmt_rate,
    median,
    ratio_of,
)
from part_overhead import PYTHON_READER, Watch, interleaved, watched_servers


def _observe(run: dict[str, Any] | None) -> dict[str, Any]:
    return dict((run or {}).get("observe") or {})


def part_events(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("6. kernel events against sampling", flush=True)
    for name, argv in watched_servers(tools, plan):
        methods = ("events", PYTHON_READER, "sample")
        plain, watches = interleaved(procs, tools, plan, argv, methods)
        _rows(table, name, plain, watches, C=name.startswith("C"))
    table.notes.append(
        "6: `zombiewatch watch PID --observe events|sample --interval 0.01` on a server"
        " flooded by the C flooder, interleaved with unwatched floods on the same server;"
        " events-python: events read by the monitor's own thread (ZOMBIEWATCH_NATIVE=0)"
        " instead of zombiewatch._pump's."
        " CPU per child is the watcher's user+system time during the flood divided by"
        " the children that exited (every fork of the tree gives one exit and one reap)."
        " Exactly observed: reaps whose time came from the child's pidfd; the rest were"
        " reaped before the watcher could open one and are counted with their bound."
    )


def _rows(
    table: Table, name: str, plain: list[float], watches: dict[str, list[Watch]], C: bool
) -> None:
    target = 0.95 if C else 0.98
    for method, ws in watches.items():
        ratio = ratio_of([w.rate for w in ws], plain)
        notes = f"the watcher used {median([w.share for w in ws]):.0%} of one core"
        if method.startswith("events"):
            exited = [float(_observe(w.run).get("children_exited") or 0) for w in ws]
            per_child = [w.cpu / n * 1e6 for w, n in zip(ws, exited, strict=True) if n]
            events = [float(_observe(w.run).get("events") or 0) for w in ws]
            per_event = [w.cpu / n * 1e6 for w, n in zip(ws, events, strict=True) if n]
            exact = [
                float(_observe(w.run).get("exact") or 0) / n
                for w, n in zip(ws, exited, strict=True)
                if n
            ]
            lost = sum(int(_observe(w.run).get("events_lost") or 0) for w in ws)
            life = [dict((w.run or {}).get("lifetime_ms") or {}) for w in ws]
            notes += (
                f"; {median(per_child) if per_child else 0:.1f} µs of watcher CPU per child"
                f" (target ≤ 15), {median(per_event) if per_event else 0:.1f} per event read"
                f"; exactly observed reaps {median(exact) if exact else 0:.1%}"
                f"; lifetimes p50/p99/max {median([lf.get('p50') or 0 for lf in life]):.2f}/"
                f"{median([lf.get('p99') or 0 for lf in life]):.2f}/"
                f"{median([lf.get('max') or 0 for lf in life]):.2f} ms; events lost {lost}"
            )
        table.add(
            Row(
                "6",
                f"{name} watched ({method})",
                fmt_rate(median([w.rate for w in ws])),
                f"unwatched {fmt_rate(median(plain))}",
                ratio,
                f"≥ {target:g}{X} (≤ {1 - target:.0%} lower)",
                ratio >= target,
                notes=notes,
            )
        )
