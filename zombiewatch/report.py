"""Results of runs, their verdicts and exit code, as text and JSON.

This module decides nothing about processes: it holds what the runner and
the monitor measured, derives the verdicts and the exit code from it
(black's ``Report.return_code``), and renders it: the report itself, and
the log lines for a load that failed apart from the verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zombiewatch import _stats
from zombiewatch._text import clip, failure_list, number
from zombiewatch.errors import ExitCode
from zombiewatch.modes.base import FAIL, PASS
from zombiewatch.monitor import MonitorStats, Parent, Zombie


@dataclass
class Check:
    """A named question a run answers with a verdict (``run --pid1``: orphans, SIGTERM)."""

    name: str
    verdict: str  # "pass", "fail" or "skip" (the run could not answer it)
    text: str  # one line, for people
    data: dict[str, Any] = field(default_factory=dict)  # the figures, for JSON

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "text": self.text, **self.data}


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
    # run, watch: what JUnit names the testcase, stable from run to run
    # (--name, or the program's name); "" names it by ``mode``.
    name: str = ""
    duration: float = 0.0  # seconds from the start of the load to its end
    load_end: float = 0.0  # monotonic time the load ended and the settle window began
    zombies_at_start: int = 0
    zombies_at_load_end: int = 0
    escaped: int = 0
    orphans_at_stop: int = 0
    max_leaked: int = 0
    grace: float | None = None
    max_zombies: int | None = None
    max_age: float = 0.0  # oldest any zombie got, seconds
    listen_queue: dict[str, int] | None = None  # host-wide deltas over the run
    stopped_early: str | None = None
    load_status: int | None = None  # exit status of a --load command
    target_status: int | None = None  # exit status of a program that exited by itself
    target_log: str = ""
    target_tail: list[str] = field(default_factory=list)  # run: CMD's last lines of output
    fork_failures: int = 0  # connections the built-in server refused: no worker could start
    accept_pauses: int = 0  # times it paused accepting, out of descriptors, refusing no one
    ground_truth: dict[str, Any] | None = None  # _record.compare(), with --ground-truth
    checks: list[Check] = field(default_factory=list)  # run --pid1
    ns_pids: dict[int, int] = field(default_factory=dict)  # host pid -> pid in its namespace
    # --max-failed: connections allowed to fail, a count or (percent) a share of them.
    max_failed: float = 0
    max_failed_percent: bool = False
    # Set when the program under test ended before the load did and left
    # nothing serving: what it ended with ("exited with status 1").
    target_ended: str | None = None
    max_zombies_hit: int | None = None  # zombies at once when --max-zombies stopped the load
    # Zombies present at the end but younger than the settle window: born
    # during it, so not (yet) leaked.
    unsettled: int = 0
    # Leaks past the handed-off list's cap (MAX_HANDED_OFF): counted, not listed.
    leaked_unlisted: int = 0

    @property
    def leaked_count(self) -> int:
        """Every zombie leaked: those listed in ``leaked`` and those counted only."""
        return len(self.leaked) + self.leaked_unlisted

    def zombie_rules(self) -> list[str]:
        """The zombie rules that failed (leaked, grace, max-zombies): exit 1."""
        failed = []
        if self.leaked_count > self.max_leaked:
            failed.append(
                f"leaked: {self.leaked_count} zombie(s) outlived the {self.settle:g} s settle"
                f" window (--max-leaked {self.max_leaked})"
            )
        if self.grace is not None and self.max_age > self.grace:
            failed.append(
                f"grace: a zombie stayed one for {self.max_age:.3g} s (--grace {self.grace:g})"
            )
        if self.max_zombies is not None and self.monitor.peak_zombies >= self.max_zombies:
            # One number for one event: the count that tripped the rule and
            # stopped the load, not a later (higher) peak.
            at_once = self.max_zombies_hit or self.monitor.peak_zombies
            failed.append(
                f"max-zombies: {at_once} zombies at once (--max-zombies {self.max_zombies})"
            )
        failed.extend(f"{c.name}: {c.text}" for c in self.checks if c.verdict == FAIL)
        return failed

    def counted_failures(self) -> dict[str, int]:
        """Failed connections by reason, without those the runner itself cut
        short when --max-zombies stopped the load."""
        failures = dict(self.flood.get("failures", {}))
        if self.stopped_early:
            failures.pop("stopped", None)
        return failures

    def allowed_failures(self) -> int:
        """How many connections --max-failed lets fail."""
        if not self.max_failed_percent:
            return int(self.max_failed)
        return int(self.max_failed * int(self.flood.get("connections", 0)) / 100)

    def load_rules(self) -> list[str]:
        """The load rules that failed (load, target): the run measured, but
        not under the load asked for; exit 4 when no zombie rule failed."""
        failed = []
        failures = self.counted_failures()
        failed_count = sum(failures.values())
        if failed_count > self.allowed_failures():
            budget = ""
            if self.max_failed:
                unit = "%" if self.max_failed_percent else ""
                budget = f" (--max-failed {self.max_failed:g}{unit})"
            failed.append(
                f"load: {failed_count} of {self.flood.get('connections', 0)} connections"
                f" failed: {failure_list(failures)}{budget}"
            )
        if self.load_status and not self.stopped_early:
            failed.append(f"load: the load command exited with status {self.load_status}")
        if self.target_ended is not None:
            failed.append(f"target: the program {self.target_ended} before the load ended")
        return failed

    @property
    def failed_rules(self) -> list[str]:
        """Each verdict rule that failed, said the way the report prints it."""
        return self.zombie_rules() + self.load_rules()

    @property
    def verdict(self) -> str:
        """ "pass" when every verdict rule held: nothing leaked, and the load
        ran as asked."""
        return FAIL if self.failed_rules else PASS

    @property
    def zombie_verdict(self) -> str:
        """The verdict of the zombie rules alone: what a mode's contract promises."""
        return FAIL if self.zombie_rules() else PASS

    def effective_interval(self) -> float | None:
        """Mean seconds between samples: more than --interval when sampling
        a large tree takes longer than the interval."""
        stats = self.monitor
        if stats.samples < 2 or stats.last is None or not stats.timeline:
            return None
        return (stats.last.t - stats.timeline[0].t) / (stats.samples - 1)

    def completed_connections(self) -> int:
        """Connections that ran to an end of their own: every one started,
        less those cut short or never started (stopped, flood deadline)."""
        failures = self.flood.get("failures", {})
        cut = int(failures.get("stopped", 0)) + int(failures.get("flood deadline", 0))
        return max(0, int(self.flood.get("connections", 0)) - cut)

    def growth(self) -> dict[str, float | None]:
        """How fast zombies appeared and piled up over the load phase.

        Per minute only for a load phase of a minute or more: a shorter one
        would be extrapolated; per second always. Per connection means per
        completed connection (``completed_connections``).
        """
        seconds = self.duration
        completed = self.completed_connections()
        net = self.zombies_at_load_end - self.zombies_at_start
        seen = self.monitor.zombies_seen
        per_minute = seconds >= 60
        return {
            "new_per_second": round(seen / seconds, 3) if seconds > 0 else None,
            "net_per_second": round(net / seconds, 3) if seconds > 0 else None,
            "new_per_minute": round(seen * 60 / seconds, 2) if per_minute else None,
            "net_per_minute": round(net * 60 / seconds, 2) if per_minute else None,
            "net_per_connection": round(net / completed, 4) if completed else None,
        }

    def orphans(self) -> dict[str, Any]:
        """Where the target's orphans went, who orphaned them, and how long
        their zombies stayed zombies there."""
        stats = self.monitor
        orphaned_by = []
        for (pid, through), count in sorted(stats.orphaned_by.items(), key=lambda i: -i[1]):
            parent = stats.parents.get(pid)
            orphaned_by.append(
                {
                    "pid": pid or None,  # null: no sample saw the orphan's parent
                    "name": parent.name if parent else None,
                    "cmdline": parent.cmdline if parent else None,
                    "through_children": through,  # its children exited before theirs (double fork)
                    "orphans": count,
                }
            )
        return {
            "adopted_by": {str(adopter): n for adopter, n in stats.escaped.items()},
            "orphaned_by": orphaned_by,
            "zombie_ms": _stats.summary_ms(stats.adopted_lifetimes),
        }

    def by_parent(self) -> list[dict[str, Any]]:
        """Zombie holders, most zombies first: who to blame for a leak."""
        leaked: dict[int, int] = {}
        for zombie in self.leaked:
            leaked[zombie.ppid] = leaked.get(zombie.ppid, 0) + 1
        holders = [p for p in self.monitor.parents.values() if p.zombies_seen]
        parents = sorted(holders, key=lambda p: -p.zombies_seen)
        return [
            {
                "pid": p.pid,
                "name": p.name,
                "cmdline": p.cmdline,
                "zombies_seen": p.zombies_seen,
                "leaked": leaked.get(p.pid, 0),
                "adopter": p.adopter,
                # Who collected its zombies: itself, or an adopter after it
                # exited without collecting them (each one of its leaks
                # with kernel events; when sampled, those it held for the
                # settle window or longer).
                "reaped_by_parent": p.reaped,
                "reaped_by_adopter": p.handed_off,
            }
            for p in parents
        ]

    @property
    def met_expectation(self) -> bool:
        """True when the zombie verdict is the one the mode's contract
        promises, under the load asked for."""
        if self.expected is None:
            return True
        return self.zombie_verdict == self.expected and not self.load_rules()

    @property
    def measured(self) -> bool:
        """False when no connection got through: the verdict means nothing.

        A load stopped early by --max-zombies measured what it had to: the
        zombies were there, whether or not an answer came back first.
        """
        if self.stopped_early:
            return True
        return int(self.flood.get("connections", 0)) == 0 or int(self.flood.get("ok", 0)) > 0

    def observation(self) -> dict[str, Any]:
        """How the tree was observed, and so what its lifetimes mean."""
        stats = self.monitor
        if stats.method != "events":
            return {
                "method": stats.method,
                "resolution": f"sampled every {stats.interval * 1000:g} ms:"
                f" lifetimes ±{stats.interval * 1000:g} ms; a zombie shorter than that"
                " may be missed",
            }
        edges = ["<0.1ms", "<1ms", "<10ms", "<100ms", "<1s", "<10s", ">=10s"]
        return {
            "method": "events",
            "resolution": "kernel exit time to the reap's wake-up: every child seen",
            "children_exited": stats.zombies_seen,
            "exact": stats.lifetimes_closed,
            # Reaped before their pidfd could be opened: lifetimes bounded above.
            "unwatched": stats.unwatched,
            "unwatched_within_ms": round(stats.unwatched_bound * 1000, 3),
            "before_watch": stats.before_watch,
            "events_lost": stats.events_lost,
            "histogram": dict(zip(edges, stats.histogram, strict=True)),
        }

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
            "leaked": self.leaked_count,
            "unsettled": self.unsettled,
            "leaked_zombies": [
                {
                    "pid": z.pid,
                    "ppid": z.ppid,
                    "name": z.name,
                    "age_ms": round(z.age(self.end) * 1000, 1),
                    "adopted": z.adopted,
                    # Its parent exited without collecting it; age_ms is how
                    # long the parent held it.
                    "handed_off": z.held is not None,
                }
                for z in self.leaked
            ],
            "by_parent": self.by_parent(),
            "orphans": self.orphans(),
            "growth": self.growth(),
            "completed_connections": self.completed_connections() if connections else None,
            "zombies_per_connection": (
                round(self.zombies_at_load_end / self.completed_connections(), 4)
                if self.completed_connections()
                else None
            ),
            "escaped": self.escaped,
            "orphans_at_stop": self.orphans_at_stop,
            "lifetime_ms": self.monitor.lifetime_ms(),
            "observe": self.observation(),
            "max_live_children": self.monitor.max_live_children,
            "samples": self.monitor.samples,
            "interval_ms": round(self.monitor.interval * 1000, 3),
            "effective_interval_ms": _round_ms(self.effective_interval()),
            "settle_s": self.settle,
            "duration_s": round(self.duration, 3),
            "max_zombie_age_ms": round(self.max_age * 1000, 1),
            "failed_rules": self.failed_rules,
            "stopped_early": self.stopped_early,
            "listen_queue": (
                None if self.listen_queue is None else {**self.listen_queue, "scope": "host"}
            ),
            "fork_failures": self.fork_failures,
            "accept_pauses": self.accept_pauses,
            "ground_truth": self.ground_truth,
            "load_status": self.load_status,
            "target_status": self.target_status,
            "target_tail": self.target_tail,
            "checks": [check.to_dict() for check in self.checks],
            "ns_pids": self._named_ns_pids(),
        }

    def _named_ns_pids(self) -> dict[str, int]:
        """Host pid -> pid in its namespace, for PID 1 and the pids the run
        names (zombie holders, leaked zombies, orphaners), not every process
        a flood forked."""
        named = {pid for pid, ns in self.ns_pids.items() if ns == 1}
        named.update(self.monitor.parents)
        named.update(pid for pid, _through in self.monitor.orphaned_by)
        for zombie in self.leaked:
            named.update((zombie.pid, zombie.ppid))
        return {str(pid): self.ns_pids[pid] for pid in sorted(named) if pid in self.ns_pids}


@dataclass
class Report:
    """All runs of one command, and whether expectations were checked."""

    runs: list[RunResult]
    check: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # mode -> why

    @property
    def return_code(self) -> ExitCode:
        """The process exit status that CI asserts on (docs/DESIGN.md, Verdict rules):
        3 nothing measured, 1 a zombie rule failed (with ``--check``: a zombie
        verdict missed its expectation), 4 a load rule failed, else 0."""
        if any(not run.measured for run in self.runs):
            return ExitCode.NOT_MEASURED
        if self.check:
            zombies = any(
                run.expected is not None and run.zombie_verdict != run.expected for run in self.runs
            )
        else:
            zombies = any(run.zombie_rules() for run in self.runs)
        if zombies:
            return ExitCode.ZOMBIES
        if any(run.load_rules() for run in self.runs):
            return ExitCode.LOAD_FAILED
        return ExitCode.OK

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
            text = render_run(self.runs[0])
        elif any(run.checks for run in self.runs):
            text = "\n\n".join(render_run(run) for run in self.runs)  # --compare-init
        else:
            text = _render_table(self.runs, self.check)
        for mode, why in self.skipped.items():
            text += f"\nskipped {mode}: {why}"
        return text


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _truth_line(truth: dict[str, Any]) -> str:
    life = truth["lifetime_us"]
    line = (
        f"truth      the server's own record: {truth['children']} children, zombie"
        f" p50/p99/max {number(life['p50'])}/{number(life['p99'])}/{number(life['max'])} µs"
    )
    if "missed" in truth:
        exits, reaps = truth["exit_after_x_us"], truth["reap_error_us"]
        line += (
            f"; the monitor missed {truth['missed']}, timed {truth['exact']} exactly;"
            f" exit event after the child's last line p50/p99 {number(exits['p50'])}"
            f"/{number(exits['p99'])} µs, reap seen within p50/p99 {number(reaps['p50'])}"
            f"/{number(reaps['p99'])} µs"
        )
    return line


def _resolution(d: dict[str, Any]) -> str:
    observed = d["observe"]
    if observed["method"] != "events":
        return (
            f"sampled every {d['interval_ms']:g} ms,"
            f" {_ms(d['effective_interval_ms'])} ms in effect, {d['samples']} samples"
        )
    text = (
        f"exact, from kernel events: {observed['exact']} of {observed['children_exited']}"
        " exited children reaped and timed"
    )
    if observed["unwatched"]:
        text += (
            f"; {observed['unwatched']} reaped before they could be watched, each within"
            f" {observed['unwatched_within_ms']:g} ms of its exit"
        )
    if observed["before_watch"]:
        text += f"; {observed['before_watch']} zombie(s) from before the watch"
    if observed["events_lost"]:
        text += (
            f"; EVENTS LOST {observed['events_lost']} time(s), the tree re-read from /proc:"
            " counts are lower bounds"
        )
    return text


def _lifetimes(run: RunResult) -> str:
    life = run.monitor.lifetime_ms()
    return f"{_ms(life['p50'])}/{_ms(life['p99'])}/{_ms(life['max'])}"


def _load_line(run: RunResult, d: dict[str, Any]) -> str:
    if d["connections"]:
        lat, conn = d["latency_ms"], d["connect_ms"]
        failures = failure_list(d["failures"])
        return (
            f"flood      {d['connections']} connections: {d['ok']} ok, {d['failed']} failed"
            + (f" ({failures})" if failures else "")
            + f"; {d['conn_per_s']:.0f} conn/s; latency p50 {_ms(lat.get('p50'))} ms,"
            f" p99 {_ms(lat.get('p99'))} ms; connect p99 {_ms(conn.get('p99'))} ms"
        )
    if run.load_status is not None:
        return f"load       the load command exited with status {run.load_status}"
    return f"watched    {run.duration:.1f} s"


def _growth_line(growth: dict[str, float | None]) -> str:
    # Under a minute: per second, not extrapolated to a minute.
    unit = "minute" if growth["new_per_minute"] is not None else "second"
    short = "min" if unit == "minute" else "s"
    new, net = number(growth[f"new_per_{unit}"]), number(growth[f"net_per_{unit}"])
    rates = f"{new} new/{short}, net {net}/{short}"
    line = f"growth     {rates}"
    if growth["net_per_connection"] is not None:
        line += f", net {number(growth['net_per_connection'])} per completed connection"
    return line


def _command(cmdline: list[str], width: int = 60) -> str:
    return clip(" ".join(cmdline) or "?", width)


def render_run(run: RunResult) -> str:
    """The text report of one run, a labelled line per fact."""
    d = run.to_dict()
    lines = [f"mode       {run.mode}: {run.summary}" if run.summary else f"target     {run.mode}"]
    if run.checks:
        root = min(run.ns_pids, key=lambda pid: run.ns_pids[pid], default=None)
        where = f" (host pid {root})" if root is not None else ""
        lines[0] += f", as PID 1 of its own PID namespace{where}"
    lines.append(_load_line(run, d))
    if run.listen_queue is not None:
        lines.append(
            f"listen     queue overflows {run.listen_queue['overflows']}, drops"
            f" {run.listen_queue['drops']} during the run (host-wide counters, every listener)"
        )
    growth = d["growth"]
    lines += [
        f"zombies    peak {d['peak_zombies']}, seen {d['zombies_seen']}"
        f"{' (every child that exited)' if d['observe']['method'] == 'events' else ''},"
        f" leaked {d['leaked']} after a {run.settle:g} s settle window"
        + (f" ({run.unsettled} younger than the window at its end)" if run.unsettled else ""),
        _growth_line(growth),
        f"lifetime   p50/p99/max {_lifetimes(run)} ms ({_resolution(d)})",
        f"children   max live {d['max_live_children']}; orphans escaped {d['escaped']}"
        f" during the run, {d['orphans_at_stop']} when the target stopped",
    ]
    histogram = d["observe"].get("histogram")
    if histogram and any(histogram.values()):
        buckets = ", ".join(f"{edge} {n}" for edge, n in histogram.items() if n)
        lines.insert(-1, f"histogram  zombie lifetimes: {buckets}")
    orphans = d["orphans"]
    for adopter, count in orphans["adopted_by"].items():
        who = "PID 1 (init)" if adopter == "1" else f"pid {adopter} (a subreaper)"
        if run.ns_pids.get(int(adopter)) == 1:
            who = f"{_pid(run, int(adopter))}, PID 1 of its namespace"
        life = orphans["zombie_ms"]
        lines.append(
            f"orphans    {count} escaped to {who}; as zombies there p50/max"
            f" {_ms(life['p50'])}/{_ms(life['max'])} ms"
        )
    for origin in orphans["orphaned_by"][:3]:
        lines.append(f"orphaned   {origin['orphans']} by {_orphaner(origin, run)}")
    for parent in d["by_parent"][:5]:
        role = " (adopted them)" if parent["adopter"] else ""
        by_adopter = parent["reaped_by_adopter"]
        lines.append(
            f"parent     {_pid(run, parent['pid'])}"
            f" {_command(parent['cmdline'] or [parent['name']])}:"
            f" {parent['zombies_seen']} zombie(s) seen, {parent['reaped_by_parent']} reaped"
            f" by it{f', {by_adopter} by an adopter after it exited' if by_adopter else ''},"
            f" {parent['leaked']} leaked{role}"
        )
    for zombie in d["leaked_zombies"][:10]:
        lines.append(f"leaked     {describe_leak(zombie, run.monitor.parents, run.ns_pids)}")
    if run.leaked_count > 10:
        lines.append(f"leaked     ... and {run.leaked_count - 10} more")
    if run.ground_truth is not None:
        lines.append(_truth_line(run.ground_truth))
    if run.fork_failures:
        lines.append(
            f"refused    {run.fork_failures} connection(s): the server could not start a worker"
        )
    if run.accept_pauses:
        lines.append(
            f"paused     accepting {run.accept_pauses} time(s): the server was out of"
            " descriptors, and clients waited unanswered"
        )
    if run.stopped_early:
        lines.append(f"stopped    the load early: {run.stopped_early}")
    if run.target_status is not None:
        lines.append(f"exited     the target exited by itself with status {run.target_status}")
        if run.target_status != 0 and run.target_tail:
            lines.append("output     its last lines:")
            lines.extend(f"           | {line}" for line in run.target_tail)
    lines.extend(f"check      {c.name}: {c.verdict.upper()}, {c.text}" for c in run.checks)
    lines.extend(f"rule       {rule}" for rule in run.failed_rules if not _is_check(run, rule))
    expected = f" (expected {run.expected.upper()})" if run.expected else ""
    lines.append(f"verdict    {run.verdict.upper()}{expected}")
    return "\n".join(lines)


def _is_check(run: RunResult, rule: str) -> bool:
    return any(rule == f"{c.name}: {c.text}" for c in run.checks)


def _pid(run: RunResult, pid: int, word: str = "pid ") -> str:
    """``pid 4242``, or ``pid 4242 [ns 7]`` where it ran in a PID namespace."""
    return _ns_pid(run.ns_pids, pid, word)


def _ns_pid(ns_pids: dict[int, int], pid: int, word: str = "pid ") -> str:
    ns = ns_pids.get(pid)
    return f"{word}{pid}" if ns is None else f"{word}{pid} [ns {ns}]"


def describe_leak(
    zombie: dict[str, Any],
    parents: dict[int, Parent],
    ns_pids: dict[int, int] | None = None,
    width: int = 40,
) -> str:
    """One leaked zombie, as the text report and JUnit say it; the parent's
    command line clipped to ``width`` (JUnit has room for all of it)."""
    ns_pids = ns_pids or {}
    parent = parents.get(zombie["ppid"])
    held_by = f" {_command(parent.cmdline or [parent.name], width)}" if parent else ""
    text = (
        f"{_ns_pid(ns_pids, zombie['pid'])} ({zombie['name']}),"
        f" parent {_ns_pid(ns_pids, zombie['ppid'], '')}{held_by}"
    )
    if zombie["handed_off"]:
        return (
            text + f", held {zombie['age_ms']:.0f} ms, never collected by it: it exited and"
            " an adopter collected it"
        )
    return text + f", zombie for {zombie['age_ms']:.0f} ms"


def _orphaner(origin: dict[str, Any], run: RunResult) -> str:
    if not origin["pid"]:
        return "processes unknown: no sample caught the orphan with its parent"
    named = f"{_pid(run, origin['pid'])} {_command(origin['cmdline'] or [origin['name'] or '?'])}"
    if origin["through_children"]:
        return f"children of {named} that exited before their own children (as in a double fork)"
    return named


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
        missed = [run.mode for run in runs if run.zombie_verdict != (run.expected or PASS)]
        rows.append(
            "check: every mode met its expected verdict"
            if not missed
            else f"check: {', '.join(missed)} missed the expected verdict"
        )
    rows.extend(f"rule {run.mode}: {rule}" for run in runs for rule in run.load_rules())
    return "\n".join(rows)
