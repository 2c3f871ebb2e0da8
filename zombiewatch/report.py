"""Results of runs, their verdicts and exit code, as text and JSON.

This module decides nothing about processes: it holds what the runner and
the monitor measured, derives the verdicts and the exit code from it
(black's ``Report.return_code``), and renders it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zombiewatch.errors import ExitCode
from zombiewatch.monitor import MonitorStats, Zombie

PASS = "pass"
FAIL = "fail"


@dataclass
class RunResult:
    """One mode (or one watched program) measured once."""

    mode: str
    expected: str | None
    summary: str
    flood: dict[str, Any]
    monitor: MonitorStats
    leaked: list[Zombie]
    settle: float
    end: float  # monotonic time of the final sample, for leaked zombies' ages
    zombies_at_load_end: int = 0
    escaped: int = 0
    orphans_at_stop: int = 0
    max_leaked: int = 0
    server_log: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """ "pass" when no more than ``max_leaked`` zombies outlived the settle window."""
        return PASS if len(self.leaked) <= self.max_leaked else FAIL

    @property
    def met_expectation(self) -> bool:
        """True when the verdict is the one the mode's contract promises."""
        return self.expected is None or self.verdict == self.expected

    @property
    def measured(self) -> bool:
        """False when no connection got through: the verdict means nothing."""
        return int(self.flood.get("connections", 0)) == 0 or int(self.flood.get("ok", 0)) > 0

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON; keys are documented in the README and stable."""
        connections = self.flood.get("connections", 0)
        return {
            "mode": self.mode,
            "expected": self.expected,
            "verdict": self.verdict,
            "met_expectation": self.met_expectation,
            "connections": connections,
            "ok": self.flood.get("ok", 0),
            "failed": self.flood.get("failed", 0),
            "failures": self.flood.get("failures", {}),
            "conn_per_s": self.flood.get("conn_per_s", 0.0),
            "latency_ms": self.flood.get("latency_ms", {}),
            "connect_ms": self.flood.get("connect_ms", {}),
            "peak_zombies": self.monitor.peak_zombies,
            "zombies_seen": self.monitor.zombies_seen,
            "leaked": len(self.leaked),
            "leaked_zombies": [
                {
                    "pid": z.pid,
                    "ppid": z.ppid,
                    "name": z.name,
                    "age_ms": round(z.age(self.end) * 1000, 1),
                }
                for z in self.leaked
            ],
            "zombies_per_connection": (
                round(self.zombies_at_load_end / connections, 4) if connections else None
            ),
            "escaped": self.escaped,
            "orphans_at_stop": self.orphans_at_stop,
            "lifetime_ms": self.monitor.lifetime_ms(),
            "max_live_children": self.monitor.max_live_children,
            "samples": self.monitor.samples,
            "interval_ms": round(self.monitor.interval * 1000, 3),
            "settle_s": self.settle,
        }


@dataclass
class Report:
    """All runs of one command, and whether expectations were checked."""

    runs: list[RunResult]
    check: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # mode -> why

    @property
    def return_code(self) -> ExitCode:
        """The process exit status that CI asserts on (DESIGN.md)."""
        if any(not run.measured for run in self.runs):
            return ExitCode.NOT_MEASURED
        if self.check:
            ok = all(run.met_expectation for run in self.runs)
        else:
            ok = all(run.verdict == PASS for run in self.runs)
        return ExitCode.OK if ok else ExitCode.ZOMBIES

    def to_json(self) -> str:
        """One JSON object: ``{"runs": [...], ...}``."""
        data = {
            "runs": [run.to_dict() for run in self.runs],
            "skipped": self.skipped,
            "check": self.check,
            "exit_code": int(self.return_code),
        }
        return json.dumps(data, indent=2)

    def render(self) -> str:
        """Text for people: a block for one run, a table for several."""
        if len(self.runs) == 1 and not self.check:
            text = _render_one(self.runs[0])
        else:
            text = _render_table(self.runs, self.check)
        for mode, why in self.skipped.items():
            text += f"\nskipped {mode}: {why}"
        return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _lifetimes(run: RunResult) -> str:
    life = run.monitor.lifetime_ms()
    return f"{_ms(life['p50'])}/{_ms(life['p99'])}/{_ms(life['max'])}"


def _render_one(run: RunResult) -> str:
    d = run.to_dict()
    lat = d["latency_ms"]
    failures = ", ".join(f"{n} {why}" for why, n in d["failures"].items())
    lines = [
        f"mode       {run.mode}: {run.summary}" if run.summary else f"mode       {run.mode}",
        f"flood      {d['connections']} connections: {d['ok']} ok, {d['failed']} failed"
        + (f" ({failures})" if failures else "")
        + f"; {d['conn_per_s']:.0f} conn/s; latency p50 {_ms(lat.get('p50'))} ms,"
        f" p99 {_ms(lat.get('p99'))} ms",
        f"zombies    peak {d['peak_zombies']}, seen {d['zombies_seen']},"
        f" leaked {d['leaked']} after a {run.settle:g} s settle window",
        f"lifetime   p50/p99/max {_lifetimes(run)} ms"
        f" (sampled every {d['interval_ms']:g} ms, {d['samples']} samples)",
        f"children   max live {d['max_live_children']}; escaped to the runner"
        f" {d['escaped']} during the run, {d['orphans_at_stop']} when the server stopped",
    ]
    for zombie in d["leaked_zombies"][:10]:
        lines.append(
            f"leaked     pid {zombie['pid']} ({zombie['name']}), parent {zombie['ppid']},"
            f" zombie for {zombie['age_ms']:.0f} ms"
        )
    if len(run.leaked) > 10:
        lines.append(f"leaked     ... and {len(run.leaked) - 10} more")
    expected = f" (expected {run.expected.upper()})" if run.expected else ""
    lines.append(f"verdict    {run.verdict.upper()}{expected}")
    lines.extend(f"note       {note}" for note in run.notes)
    return "\n".join(lines)


_COLUMNS = (
    ("mode", "<13"),
    ("expected", "<9"),
    ("verdict", "<8"),
    ("met", "<4"),
    ("ok/conns", ">10"),
    ("conn/s", ">7"),
    ("peak", ">5"),
    ("leaked", ">7"),
    ("escaped", ">8"),
    ("live max", ">9"),
    ("lifetime p50/p99/max ms", ">24"),
)


def _render_table(runs: list[RunResult], check: bool) -> str:
    header = " ".join(f"{name:{fmt}}" for name, fmt in _COLUMNS)
    rows = [header]
    for run in runs:
        d = run.to_dict()
        cells = (
            run.mode,
            (run.expected or "-").upper(),
            run.verdict.upper(),
            "yes" if run.met_expectation else "NO",
            f"{d['ok']}/{d['connections']}",
            f"{d['conn_per_s']:.0f}",
            d["peak_zombies"],
            d["leaked"],
            d["escaped"],
            d["max_live_children"],
            _lifetimes(run),
        )
        rows.append(
            " ".join(f"{cell:{fmt}}" for cell, (_n, fmt) in zip(cells, _COLUMNS, strict=True))
        )
    if check:
        missed = [run.mode for run in runs if not run.met_expectation]
        rows.append(
            "check: every mode met its expected verdict"
            if not missed
            else f"check: {', '.join(missed)} missed the expected verdict"
        )
    return "\n".join(rows)
