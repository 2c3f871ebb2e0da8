"""Results of runs, their verdicts and exit code, as text and JSON.

This module decides nothing about processes: it holds what the runner and
the monitor measured, derives the verdicts and the exit code from it
(black's ``Report.return_code``), and renders it: the report itself, and
the log lines for a load that failed apart from the verdict.
"""

from __future__ import annotations

import json
import secrets
import shlex
import textwrap
from dataclasses import dataclass, field
from typing import Any

from zombiewatch import __version__, _stats
from zombiewatch._names import server_title
from zombiewatch._text import clip, failure_list, figure
from zombiewatch.errors import ExitCode
from zombiewatch.modes.base import FAIL, PASS
from zombiewatch.monitor import MonitorStats, Parent, Zombie

# The version of the JSON format (``--json`` of the default command, ``run``
# and ``watch``; zombiewatch/schema/run.schema.json describes it). Adding a
# key keeps it; removing or renaming a key, or changing what a value means
# or its type, adds one (README.md, JSON output).
SCHEMA_VERSION = 1

# The text report names at most this many groups of leaked zombies (one
# line per parent) and this many pids in each.
MAX_LEAK_LINES = 10
PIDS_PER_LEAK_LINE = 5


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

    mode: str  # the reaping mode; for ``run`` its command line; for ``watch`` "pid N"
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
    # Which command measured: "mode" (a built-in mode), "run" (a program it
    # started and stopped) or "watch" (a process it only watched).
    kind: str = "mode"

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
            # Read by zombiewatch._pump's thread, or (where it was not built)
            # by the monitor's own, at more CPU per child (docs/BENCHMARKS.md).
            "reader": stats.reader,
            "children_exited": stats.zombies_seen,
            "exact": stats.lifetimes_closed,
            # Reaped before their pidfd could be opened: lifetimes bounded above.
            "unwatched": stats.unwatched,
            "unwatched_within_ms": round(stats.unwatched_bound * 1000, 3),
            "before_watch": stats.before_watch,
            "events_lost": stats.events_lost,
            "events": stats.events,
            "histogram": dict(zip(edges, stats.histogram, strict=True)),
        }

    def timeline(self) -> dict[str, Any]:
        """The monitor's timeline, thinned as it keeps it (at most
        ``monitor.MAX_TIMELINE`` points), as three arrays for plotting
        elsewhere; times in seconds from the run's start: its first point
        or the load's start, whichever came first."""
        points = list(self.monitor.timeline)
        last = self.monitor.last
        if last is not None and (not points or points[-1] is not last):
            points.append(last)  # thinning may have dropped it: the arrays span the whole run
        load_start = self.load_end - self.duration if self.load_end else None
        starts = [t for t in (points[0].t if points else None, load_start) if t is not None]
        t0 = min(starts) if starts else None

        def since(t: float) -> float | None:
            return None if t0 is None else round(t - t0, 4)

        return {
            "t_s": [since(p.t) for p in points],
            "live": [p.live for p in points],
            "zombies": [p.zombies for p in points],
            "every": self.monitor.timeline.stride,  # each point one of this many samples
            "load_start_s": None if load_start is None else since(load_start),
            "load_end_s": since(self.load_end) if self.load_end else None,
            "end_s": since(self.end) if self.end else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON; keys are documented in the README and stable."""
        connections = self.flood.get("connections", 0)
        return {
            "mode": self.mode,
            "kind": self.kind,
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
            "timeline": self.timeline(),
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

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON: its format's version, ours, and the runs."""
        return {
            "schema_version": SCHEMA_VERSION,
            "zombiewatch_version": __version__,
            "runs": [run.to_dict() for run in self.runs],
            "skipped": self.skipped,
            "check": self.check,
            "exit_code": int(self.return_code),
        }

    def to_json(self) -> str:
        """One JSON object, indented, each timeline array on one line: a
        run's thousands of points one per line would bury the rest."""
        data = self.to_dict()
        # Each array is swapped for a token no output can otherwise hold,
        # then written back compact in the indented text.
        nonce = secrets.token_hex(8)
        arrays = {}
        for i, run in enumerate(data["runs"]):
            for key in ("t_s", "live", "zombies"):
                token = f"timeline-{nonce}-{i}-{key}"
                arrays[json.dumps(token)] = json.dumps(run["timeline"][key])
                run["timeline"][key] = token
        text = json.dumps(data, indent=2)
        for token, array in arrays.items():
            text = text.replace(token, array, 1)
        return text

    def render(self, width: int | None = None) -> str:
        """Text for people: a block for one run, a table for several; with
        ``width`` (a terminal's), the table leaves out columns to fit it."""
        if len(self.runs) == 1 and not self.check:
            text = render_run(self.runs[0])
        elif any(run.checks for run in self.runs):
            text = "\n\n".join(render_run(run) for run in self.runs)  # --compare-init
        else:
            text = _render_table(self.runs, self.check, width)
        for mode, why in self.skipped.items():
            text += f"\nskipped {mode}: {why}"
        return text


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _ms(value: float | None) -> str:
    return figure(value)


def _truth_line(truth: dict[str, Any]) -> str:
    life = truth["lifetime_us"]
    line = (
        f"truth      the server's own record: {truth['children']} children, zombie"
        f" p50/p99/max {figure(life['p50'])}/{figure(life['p99'])}/{figure(life['max'])} µs"
    )
    if "missed" in truth:
        error, reaps = truth["error_us"], truth["reap_error_us"]
        down, late = truth["teardown_us"], truth["exit_after_teardown_us"]
        line += (
            f"; the monitor missed {truth['missed']}, timed {truth['exact']} exactly;"
            f" lifetime error p50/p99 {figure(error['p50'])}/{figure(error['p99'])} µs"
            f" (exit event after the child's teardown of p50 {figure(down['p50'])} µs:"
            f" p50/p99 {figure(late['p50'])}/{figure(late['p99'])} µs;"
            f" reap seen within p50/p99 {figure(reaps['p50'])}/{figure(reaps['p99'])} µs)"
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
            f" {figure(observed['unwatched_within_ms'])} ms of its exit"
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
            + f"; {d['conn_per_s']:.0f} conn/s; latency p50 {figure(lat.get('p50'))} ms,"
            f" p99 {figure(lat.get('p99'))} ms; connect p99 {figure(conn.get('p99'))} ms"
        )
    if run.load_status is not None:
        return f"load       the load command exited with status {run.load_status}"
    return f"watched    {run.duration:.1f} s"


def _growth_line(growth: dict[str, float | None]) -> str:
    # Under a minute: per second, not extrapolated to a minute.
    unit = "minute" if growth["new_per_minute"] is not None else "second"
    short = "min" if unit == "minute" else "s"
    new, net = figure(growth[f"new_per_{unit}"]), figure(growth[f"net_per_{unit}"])
    rates = f"{new} new/{short}, net {net}/{short}"
    line = f"growth     {rates}"
    if growth["net_per_connection"] is not None:
        line += f", net {figure(growth['net_per_connection'])} per completed connection"
    return line


def command_line(cmdline: list[str]) -> str:
    """A command line for people: shell-quoted so it can be copied and run
    (``shlex.join``), and the built-in server (``python -m zombiewatch.server
    CONFIG_JSON``, which ``serve`` execs too) named "zombiewatch server, mode
    X" rather than by its JSON."""
    for i in range(len(cmdline) - 1):
        if cmdline[i : i + 2] == ["-m", "zombiewatch.server"]:
            try:
                mode = json.loads(cmdline[i + 2])["mode"]
            except (IndexError, ValueError, TypeError, KeyError):
                return "zombiewatch server"
            return server_title(mode)
    return shell_join(cmdline)


def shell_join(args: list[str]) -> str:
    """``args`` as one line a shell would split back into them: each
    quoted by ``shlex.quote``, or, holding a newline or another character
    that cannot be shown, as ``$'...'`` with escapes (bash, zsh, ksh)."""
    return " ".join(_quote(arg) for arg in args)


def _quote(arg: str) -> str:
    if arg.isprintable():
        return shlex.quote(arg)
    escaped = arg.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"$'{escaped}'"


def _command(cmdline: list[str], width: int = 60) -> str:
    return clip(command_line(cmdline) or "?", width)


def _has_network_load(run: RunResult) -> bool:
    """True when the run drove a load that may connect: the flood, or a
    ``--load`` command. Only then do the host's listen-queue counters say
    something about it."""
    return bool(run.flood.get("connections")) or run.load_status is not None


def render_run(run: RunResult) -> str:
    """The text report of one run, a labelled line per fact."""
    d = run.to_dict()
    lines = [f"mode       {run.mode}: {run.summary}" if run.summary else f"target     {run.mode}"]
    if run.checks:
        root = min(run.ns_pids, key=lambda pid: run.ns_pids[pid], default=None)
        where = f" (host pid {root})" if root is not None else ""
        lines[0] += f", as PID 1 of its own PID namespace{where}"
    lines.append(_load_line(run, d))
    if run.listen_queue is not None and _has_network_load(run):
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
        + (
            " while watched"  # watch stops nothing: no stop to count orphans at
            if run.kind == "watch"
            else f" during the run, {d['orphans_at_stop']} when the target stopped"
        ),
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
    lines += _leak_lines(run, d["leaked_zombies"])
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


def _leak_lines(run: RunResult, leaked: list[dict[str, Any]]) -> list[str]:
    """The leaked zombies, one line per parent (and per way they were left:
    held, or handed off), most first."""
    groups: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for zombie in leaked:
        groups.setdefault((zombie["ppid"], zombie["handed_off"]), []).append(zombie)
    ordered = sorted(groups.values(), key=len, reverse=True)[:MAX_LEAK_LINES]
    lines = [
        f"leaked     {describe_leaks(group, run.monitor.parents, run.ns_pids)}" for group in ordered
    ]
    shown = sum(len(group) for group in ordered)
    if run.leaked_count > shown:
        lines.append(f"leaked     ... and {run.leaked_count - shown} more")
    return lines


def describe_leaks(
    zombies: list[dict[str, Any]],
    parents: dict[int, Parent],
    ns_pids: dict[int, int] | None = None,
    width: int = 40,
) -> str:
    """Leaked zombies of one parent (``leaked_zombies`` items, all with one
    ``ppid`` and ``handed_off``) in one line: how many, the parent, the
    first ``PIDS_PER_LEAK_LINE`` pids and how long they were zombies."""
    ns_pids = ns_pids or {}
    first = zombies[0]
    parent = parents.get(first["ppid"])
    held_by = f" {_command(parent.cmdline or [parent.name], width)}" if parent else ""
    names = list(dict.fromkeys(z["name"] for z in zombies))
    shown = ", ".join(_ns_pid(ns_pids, z["pid"], "") for z in zombies[:PIDS_PER_LEAK_LINE])
    more = len(zombies) - PIDS_PER_LEAK_LINE
    low = f"{min(z['age_ms'] for z in zombies):.0f}"
    high = f"{max(z['age_ms'] for z in zombies):.0f}"
    ages = low if low == high else f"{low} to {high}"
    one = len(zombies) == 1
    text = (
        f"{len(zombies)} zombie{'' if one else 's'} ({', '.join(names[:3])}"
        f"{', ...' if len(names) > 3 else ''}) of parent"
        f" {_ns_pid(ns_pids, first['ppid'], '')}{held_by}:"
        f" pid{'' if one else 's'} {shown}{f' and {more} more' if more > 0 else ''}"
    )
    if first["handed_off"]:
        return (
            text + f", held {ages} ms and never collected by it: it exited and an adopter"
            f" collected {'it' if one else 'them'}"
        )
    return text + f", {'a zombie' if one else 'zombies'} for {ages} ms"


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


# The table's columns: name, alignment ("<" text, ">" figures).
_COLUMNS = (
    ("mode", "<"),
    ("expected", "<"),
    ("verdict", "<"),
    ("met", "<"),
    ("ok/conns", ">"),
    ("conn/s", ">"),
    ("peak", ">"),
    ("leaked", ">"),
    ("escaped", ">"),
    ("live max", ">"),
    ("lifetime p50/p99/max ms", ">"),
)
# Left out first, in this order, when the table is wider than the terminal;
# the verdict's columns (mode, expected, verdict, met, leaked) always stay.
_DROPPED_FIRST = ("live max", "escaped", "conn/s", "lifetime p50/p99/max ms", "ok/conns", "peak")


def _table_cells(run: RunResult) -> tuple[str, ...]:
    d = run.to_dict()
    return (
        run.mode,
        (run.expected or "-").upper(),
        run.verdict.upper(),
        "yes" if run.met_expectation else "NO",
        f"{d['ok']}/{d['connections']}",
        f"{d['conn_per_s']:.0f}",
        str(d["peak_zombies"]),
        str(d["leaked"]),
        str(d["escaped"]),
        str(d["max_live_children"]),
        _lifetimes(run),
    )


def _render_table(runs: list[RunResult], check: bool, width: int | None = None) -> str:
    """One row per run, each column as wide as its widest cell; with
    ``width``, the least needed columns left out until it fits (as
    ``scan`` cuts its command lines to a terminal's width)."""
    names = [name for name, _align in _COLUMNS]
    table = [tuple(names), *(_table_cells(run) for run in runs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(names))]
    kept = list(range(len(names)))
    dropped = []
    for name in _DROPPED_FIRST:
        if width is None or sum(widths[i] for i in kept) + len(kept) - 1 <= width:
            break
        kept.remove(names.index(name))
        dropped.append(name)
    rows = [
        " ".join(f"{row[i]:{_COLUMNS[i][1]}{widths[i]}}" for i in kept).rstrip() for row in table
    ]
    if width is not None and dropped:
        note = f"(not shown in {width} columns: {', '.join(dropped)})"
        rows += textwrap.wrap(note, width, break_long_words=False, break_on_hyphens=False)
    if check:
        missed = [run.mode for run in runs if run.zombie_verdict != (run.expected or PASS)]
        rows.append(
            "check: every mode met its expected verdict"
            if not missed
            else f"check: {', '.join(missed)} missed the expected verdict"
        )
    rows.extend(f"rule {run.mode}: {rule}" for run in runs for rule in run.load_rules())
    return "\n".join(rows)
