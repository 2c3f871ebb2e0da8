"""Part 4 of ``bench.py``: how long a zombie lives under each collecting mode
(``sigchld``, ``pidfd``, ``reaper-thread``) while the runner floods the
server, beside the C fork server watched the same way through ``zombiewatch
run``. Where kernel events work the lifetimes are exact (the kernel's exit
time to the reap's wake-up) and compared in µs; elsewhere the monitor
samples every 10 ms, which quantises a lifetime, so the figure compared is
an estimate of what the interval cannot resolve.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from _harness import (
    CONCURRENCY,
    HOST,
    PY,
    BenchError,
    Plan,
    Procs,
    Row,
    Table,
    Tools,
    free_port,
    median,
    ratio_of,
    rotate,
)

from zombiewatch import modes
from zombiewatch.observe import events_unavailable_reason


def runner_json(argv: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    try:
        return dict(json.loads(proc.stdout)["runs"][0])
    except (json.JSONDecodeError, KeyError, IndexError) as err:
        raise BenchError(f"zombiewatch: no JSON report ({proc.stderr.strip()[-300:]})") from err


def reap_variants(tools: Tools, n: int, observe: str) -> list[tuple[str, Callable[[], list[str]]]]:
    """Name and command line of each runner; the C server first, as the baseline.

    A command is made just before its run: the C server is told its port,
    and a port free now may be taken a minute later.
    """
    common = [
        "--connections",
        str(n),
        "--concurrency",
        str(CONCURRENCY),
        "--settle",
        "0.5",
        "--interval",
        "0.01",
        "--json",
        "--observe",
        observe,
    ]
    variants: list[tuple[str, Callable[[], list[str]]]] = []
    if tools.has_c:
        assert tools.fork_server is not None
        c_server = tools.fork_server

        def c_argv() -> list[str]:
            port = free_port()
            return [
                PY,
                "-m",
                "zombiewatch",
                "run",
                "--flood",
                f"{HOST}:{port}",
                *common,
                "--",
                c_server,
                str(port),
            ]

        variants.append(("C fork server (zombiewatch run)", c_argv))
    for mode in ("sigchld", "pidfd", "reaper-thread"):
        if modes.get(mode).available():
            variants.append(
                (
                    f"zombiewatch `{mode}`",
                    lambda m=mode: [  # type: ignore[misc]
                        PY,
                        "-m",
                        "zombiewatch",
                        "--mode",
                        m,
                        "--child-delay",
                        "0",
                        *common,
                    ],
                )
            )
    return variants


def lifetime(run: dict[str, Any], key: str) -> float:
    """A percentile (``p50``, ``p99``, ``max``) of a run's zombie lifetimes, in ms."""
    return float((run.get("lifetime_ms") or {}).get(key) or 0.0)


def short_lived(run: dict[str, Any], n: int) -> float:
    """Estimate the mean of min(lifetime, interval) in ms, from ``n`` connections."""
    # A zombie that lives L is seen by about min(L, I) / I samples, so the
    # share of children ever seen times the interval estimates the mean
    # of min(lifetime, interval): the part of the lifetime a sampling
    # interval cannot resolve.
    interval = float(run["effective_interval_ms"] or run["interval_ms"])
    return float(run["zombies_seen"]) / n * interval


def part_reap(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("4. reap latency", flush=True)
    n = plan.reap_connections
    why_not = events_unavailable_reason()
    variants = reap_variants(tools, n, "sample" if why_not else "events")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for rnd in range(plan.rounds):
        for name, argv in rotate(variants, rnd):
            runs[name].append(runner_json(argv(), timeout=120 + n * 0.05))
    if why_not is None:
        _exact_rows(table, runs, n)
        return
    table.notes.append(f"4: sampled, not exact: kernel events are unavailable ({why_not}).")
    base_name = variants[0][0]
    base_est = [short_lived(r, n) for r in runs[base_name]]
    for name, _ in variants:
        rs = runs[name]
        p50s, p99s = [lifetime(r, "p50") for r in rs], [lifetime(r, "p99") for r in rs]
        est = [short_lived(r, n) for r in rs]
        interval = median([r["interval_ms"] for r in rs])
        effective = median([r["effective_interval_ms"] or 0 for r in rs])
        seen = median([r["zombies_seen"] for r in rs])
        rate = median([r["conn_per_s"] for r in rs])
        fig = f"p50 {median(p50s):.1f} ms, p99 {median(p99s):.1f} ms; ≈ {median(est):.2f} ms"
        notes = (
            f"interval {interval:g} ms (effective {effective:.1f}); {seen:,.0f} of {n:,}"
            f" children seen as zombies; {rate:,.0f} conn/s; max"
            f" {median([lifetime(r, 'max') for r in rs]):.1f} ms"
        )
        against = f"{base_name} ≈ {median(base_est):.2f} ms"
        ratio = 0.0 if name == base_name else ratio_of(est, base_est)
        _add(table, rs, name == base_name, name, fig, against, ratio, notes)
    table.notes.append(
        f"4: the runner (`zombiewatch --mode M --child-delay 0`, or `zombiewatch run --flood`"
        f" for the C server) floods {n:,} connections, {CONCURRENCY} at a time, with the"
        " zombiewatch flooder while the monitor samples every 10 ms; a lifetime runs from"
        " the first sample that sees a zombie to the first that does not, so it is"
        " quantised by the interval (p50 ≈ one interval whatever the mode) and most"
        " zombies that live less than one are never seen. The ≈ figure is the share of"
        " children seen as zombies times the interval: an estimate of the mean of"
        " min(lifetime, interval), which resolves what the interval cannot; the ratio"
        " compares that estimate with the C server's."
    )


def _add(
    table: Table,
    runs: list[dict[str, Any]],
    baseline: bool,
    name: str,
    fig: str,
    against: str,
    ratio: float,
    notes: str,
) -> None:
    """One row of part 4: the baseline's, or one compared with it."""
    leaked = sum(r["leaked"] for r in runs)
    if leaked:
        notes += f"; {leaked} leaked"
    if baseline:
        table.add(Row("4", f"zombie lifetime, {name}", fig, "(the baseline)", notes=notes))
    else:
        table.add(Row("4", f"zombie lifetime, {name}", fig, against, ratio, notes=notes))


def _us(run: dict[str, Any], key: str) -> float:
    return lifetime(run, key) * 1000


def _exact_rows(table: Table, runs: dict[str, list[dict[str, Any]]], n: int) -> None:
    """Rows of exact lifetimes: p50/p99/max in µs, the p50 against the C
    server's (or, without a compiler, the first variant's)."""
    base_name = next(iter(runs))
    base = [_us(r, "p50") for r in runs[base_name]]
    for name, rs in runs.items():
        observed = [dict(r.get("observe") or {}) for r in rs]
        exact = sum(int(o.get("exact") or 0) for o in observed)
        exited = sum(int(o.get("children_exited") or 0) for o in observed)
        bound = max(float(o.get("unwatched_within_ms") or 0) for o in observed)
        fig = (
            f"p50 {median([_us(r, 'p50') for r in rs]):,.0f} µs, p99"
            f" {median([_us(r, 'p99') for r in rs]):,.0f} µs, max"
            f" {median([_us(r, 'max') for r in rs]):,.0f} µs"
        )
        notes = (
            f"{exact:,} of {exited:,} children timed exactly over {len(rs)} runs"
            f" (the rest reaped within {bound * 1000:,.0f} µs of their exit, before"
            f" they could be watched); {median([r['conn_per_s'] for r in rs]):,.0f} conn/s"
        )
        against = f"{base_name} p50 {median(base):,.0f} µs"
        ratio = 0.0 if name == base_name else ratio_of([_us(r, "p50") for r in rs], base)
        _add(table, rs, name == base_name, name, fig, against, ratio, notes)
    table.notes.append(
        f"4: the runner (`zombiewatch --mode M --child-delay 0 --observe events`, or"
        f" `zombiewatch run --flood` for the C server) floods {n:,} connections,"
        f" {CONCURRENCY} at a time, with the zombiewatch flooder. Lifetimes are exact:"
        " from the kernel's exit time of each child to the wake-up of its pidfd's HUP"
        " at the reap (docs/DESIGN.md, kernel events), no sampling interval involved;"
        " the ratio compares p50s with the first row's."
    )
