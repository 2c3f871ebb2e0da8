"""What ``zombiewatch scan`` found and what its signals did: the records, the
exit code they make, and their JSON and text.

This module decides nothing and signals nothing: ``scan`` fills these
records and runs the command's sequence; here they are shown, as
``report`` shows a measured run. The one read of ``/proc`` is the name of
the process that holds a zombie after a signal, looked up as it is shown.

Ages are upper bounds: the kernel records when a process started, not when
it died, so a zombie has been one for at most as long as its process has
existed.
"""

from __future__ import annotations

import json
import shlex
import signal
from dataclasses import dataclass, field
from typing import Any

from zombiewatch import _defaults, _procfs
from zombiewatch._text import clip
from zombiewatch.errors import ExitCode

# Characters of a command line in the text table when it is not cut to a
# terminal's width: a JVM's class path must not bury the table.
MAX_CMDLINE = 1000


# -- what the scan finds ------------------------------------------------------


@dataclass(frozen=True)
class ScannedZombie:
    """One zombie process: who it was and how long it may have been dead."""

    pid: int
    name: str
    start_ticks: int  # with pid, its identity: a reused pid starts later
    age_max: float  # seconds; an upper bound on its time as a zombie

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``pid``, ``name``, ``age_max_s``."""
        return {"pid": self.pid, "name": self.name, "age_max_s": round(self.age_max, 3)}


@dataclass
class ZombieParent:
    """A process that holds zombies, and why zombiewatch may not signal it."""

    pid: int
    start_ticks: int  # 0 when it was gone before it could be read
    uid: int | None
    user: str
    name: str
    cmdline: list[str]
    zombies: list[ScannedZombie] = field(default_factory=list)
    protected: str | None = None  # why it is never signalled, or None

    @property
    def count(self) -> int:
        """How many zombies it holds."""
        return len(self.zombies)

    @property
    def oldest_age_max(self) -> float:
        """Upper bound on how long its oldest zombie has been one, in seconds."""
        return max(z.age_max for z in self.zombies)

    def command(self, limit: int = MAX_CMDLINE) -> str:
        """Its command line for people: shell-quoted, cut at ``limit`` characters."""
        return clip(shlex.join(self.cmdline) if self.cmdline else f"[{self.name}]", limit)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the keys are listed in README.md."""
        return {
            "pid": self.pid,
            "user": self.user,
            "uid": self.uid,
            "name": self.name,
            "cmdline": self.cmdline,
            "count": self.count,
            "oldest_age_max_s": round(self.oldest_age_max, 3),
            "protected": self.protected,
            "zombies": [z.to_dict() for z in self.zombies],
        }


@dataclass(frozen=True)
class Filters:
    """Which zombies the user asked about."""

    uid: int | None = None  # the parent's real uid
    user: str | None = None  # as the user wrote it, for messages
    min_count: int = _defaults.MIN_COUNT
    parents: tuple[int, ...] = ()  # only the zombies of these processes

    def describe(self) -> str:
        """The filters as the options that set them, for messages."""
        parts = []
        if self.user is not None:
            parts.append(f"--user {self.user}")
        if self.min_count > _defaults.MIN_COUNT:
            parts.append(f"--min-count {self.min_count}")
        parts += [f"--parent {pid}" for pid in self.parents]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``user``, ``uid``, ``min_count``, ``parent`` (a list)."""
        return {
            "user": self.user,
            "uid": self.uid,
            "min_count": self.min_count,
            "parent": list(self.parents),
        }


# -- what a signal did ----------------------------------------------------------


@dataclass
class Outcome:
    """What one signal to one parent did to it and its zombies."""

    parent: ZombieParent
    signalled: bool = False
    why_not: str | None = None  # why no signal was sent
    collected: list[int] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    held_by: list[int] = field(default_factory=list)  # who holds the remaining ones now
    parent_exited: bool = False

    @property
    def verdict(self) -> str:
        """One word for JSON: collected, partly collected, ignored, not signalled."""
        if not self.signalled:
            return "not signalled"
        if not self.remaining:
            return "collected"
        return "partly collected" if self.collected else "ignored"

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the keys are listed in README.md."""
        return {
            "pid": self.parent.pid,
            "name": self.parent.name,
            "signalled": self.signalled,
            "why_not": self.why_not,
            "outcome": self.verdict,
            "collected": self.collected,
            "remaining": self.remaining,
            "held_by": self.held_by,
            "parent_exited": self.parent_exited,
        }


@dataclass
class SignalRound:
    """One signal sent to a set of parents, and what each did."""

    signal: str  # "SIGCHLD", "SIGTERM", ...
    wait: float  # the deadline, seconds
    waited: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    confirmed: bool = True  # False when the user said no at the prompt

    @property
    def sent(self) -> list[Outcome]:
        """The outcomes of the parents that got the signal."""
        return [o for o in self.outcomes if o.signalled]

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the keys are listed in README.md."""
        return {
            "signal": self.signal,
            "confirmed": self.confirmed,
            "wait_s": self.wait,
            "waited_s": round(self.waited, 3),
            "parents": [o.to_dict() for o in self.outcomes],
        }


@dataclass
class ScanResult:
    """A scan and, with ``--reap``, what the signals did."""

    parents: list[ZombieParent]  # the matching groups, most zombies first
    total_zombies: int  # every zombie seen, filters aside
    processes: int
    scan_time: float
    filters: Filters = field(default_factory=Filters)
    nudge: SignalRound | None = None
    kill: SignalRound | None = None
    remaining: int | None = None  # zombies found that are still zombies after the signals

    @property
    def zombies(self) -> int:
        """The zombies that match the filters."""
        return sum(p.count for p in self.parents)

    @property
    def return_code(self) -> ExitCode:
        """1 when matching zombies exist (after --reap: still exist), else 0."""
        left = self.zombies if self.remaining is None else self.remaining
        return ExitCode.ZOMBIES if left else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the keys are listed in README.md."""
        return {
            "zombies": self.zombies,
            "parents": [p.to_dict() for p in self.parents],
            "total_zombies": self.total_zombies,
            "processes": self.processes,
            "scan_ms": round(self.scan_time * 1000, 3),
            "filters": self.filters.to_dict(),
            "reap": None if self.nudge is None else self.nudge.to_dict(),
            "kill": None if self.kill is None else self.kill.to_dict(),
            "remaining": self.remaining,
            "exit_code": int(self.return_code),
        }

    def to_json(self) -> str:
        """One JSON object, the whole result."""
        return json.dumps(self.to_dict())


# -- text for people --------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A duration for people: 850 ms, 12.3 s, 4 min 10 s, 3 h 5 min, 2 d 4 h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_scan(result: ScanResult, reaping: bool = False, width: int | None = None) -> str:
    """The scan as a table, most zombies first.

    Without ``reaping`` it also names the parents ``--reap`` would spare;
    with it, the nudge's own report does. With ``width`` (a terminal's),
    command lines are cut to fit it, as ``ps`` does; else they are whole.
    """
    scanned = f"{result.processes:,} processes scanned in {result.scan_time * 1000:.0f} ms"
    if not result.parents:
        if result.total_zombies and result.filters.describe():
            return (
                f"no zombie matches {result.filters.describe()}"
                f" ({_plural(result.total_zombies, 'zombie')} in all; {scanned})"
            )
        return f"no zombies ({scanned})"
    rows = [("ZOMBIES", "PARENT", "USER", "OLDEST, AT MOST", "NAME", "COMMAND LINE")]
    for p in result.parents:
        age = format_age(p.oldest_age_max)
        rows.append((str(p.count), str(p.pid), p.user, age, p.name, ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    limit = MAX_CMDLINE
    if width is not None:
        limit = max(20, width - sum(widths) - 2 * len(widths))
    rows[1:] = [
        (*row[:5], p.command(limit)) for row, p in zip(rows[1:], result.parents, strict=True)
    ]
    lines = [
        f"{_plural(result.zombies, 'zombie')} held by {_plural(len(result.parents), 'parent')}"
        f" ({scanned}):",
        "",
    ]
    for row in rows:
        cells = [row[0].rjust(widths[0]), row[1].rjust(widths[1])]
        cells += [row[i].ljust(widths[i]) for i in (2, 3, 4)]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    lines.append("")
    lines.append(
        "Ages are upper bounds: the kernel records when a process started, not when it"
        " died, so each zombie has been one for at most that long."
    )
    if any(p.pid == 1 for p in result.parents):
        lines.append(
            "Zombies under PID 1 are orphans that escaped their parent; if PID 1 does not"
            " collect them, it needs an init that reaps (tini, dumb-init, docker run --init)."
        )
    if not reaping:
        spared = [p for p in result.parents if p.protected is not None]
        if spared:
            lines.append("--reap would not signal:")
            lines += [f"  {p.pid} {p.name}: {p.protected}" for p in spared]
    return "\n".join(lines)


def _held_by(outcome: Outcome) -> str:
    names = []
    for pid in outcome.held_by:
        stat = _procfs.read_stat(pid)
        names.append(f"{pid} ({stat.comm})" if stat is not None else str(pid))
    return ", ".join(names)


def render_round(round_: SignalRound) -> str:
    """What one signal did to each parent and its zombies."""
    sent = round_.sent
    lines = []
    if sent:
        lines.append(
            f"Sent {round_.signal} to {_plural(len(sent), 'parent')}; after {round_.waited:.2f} s:"
        )
    kill = round_.signal != "SIGCHLD"
    for o in sent:
        who = f"  {o.parent.pid} {o.parent.name}: "
        n_col, n_rem = len(o.collected), len(o.remaining)
        if kill:
            state = "exited" if o.parent_exited else f"still running {round_.waited:.2f} s later"
            if not n_rem:
                what = f"its {_plural(n_col, 'zombie')} were collected"
            else:
                what = f"{_plural(n_rem, 'zombie')} not collected yet, held by {_held_by(o)}"
            hint = "" if o.parent_exited else f" (it handles or ignores {round_.signal})"
            lines.append(f"{who}{state}{hint}; {what}")
        elif not n_rem:
            lines.append(f"{who}collected all {_plural(n_col, 'zombie')}")
        elif n_col:
            lines.append(f"{who}collected {n_col}, {n_rem} remain")
        else:
            lines.append(f"{who}ignored it; {_plural(n_rem, 'zombie')} remain")
    spared = [o for o in round_.outcomes if not o.signalled]
    if spared:
        lines.append(f"Not sent {round_.signal}:")
        lines += [
            f"  {o.parent.pid} {o.parent.name}: {o.why_not} ({_plural(o.parent.count, 'zombie')})"
            for o in spared
        ]
    return "\n".join(lines)


def render_plan(targets: list[ZombieParent], spared: list[Outcome], sig: signal.Signals) -> str:
    """The --kill-parents plan, shown before any signal: who gets which
    signal, who is spared and why."""
    lines = [
        f"--kill-parents: the plan (SIGCHLD to each, then {sig.name} to those"
        " still holding zombies):"
    ]
    for p in targets:
        lines.append(
            f"  SIGCHLD, then {sig.name} -> {p.pid} {p.name} ({p.user}), holding"
            f" {_plural(p.count, 'zombie')}: {p.command()}"
        )
    for o in spared:
        lines.append(f"  not signalled: {o.parent.pid} {o.parent.name}: {o.why_not}")
    if not targets:
        lines.append("  nothing to signal")
    return "\n".join(lines)


def render_summary(result: ScanResult) -> str:
    """One closing line after signals: how many of the zombies found are left."""
    if result.remaining is None:
        return ""
    found = result.zombies
    collected = found - result.remaining
    return f"{collected} of {_plural(found, 'zombie')} collected; {result.remaining} remain."
