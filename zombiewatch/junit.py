"""Render a report as JUnit XML, the format CI systems show natively, and
write it to ``--junit-xml``'s file.

One ``<testcase>`` per run: per mode for the default command, one for the
program of ``run`` or the process of ``watch``, named after the program
(``--name`` sets it) so that its history in CI survives a new port or pid.
A run fails when its verdict fails (with ``--check``: when it misses its
expected verdict); the failure text names the rules that failed, or, when
a run passed that was expected to fail, the limits it stayed within; then
the leaked zombies under their parents, each parent's command line once.
Unavailable modes are ``<skipped>``; a run that could not be measured is
an ``<error>``. The shape follows the Ant/Jenkins JUnit schema that
GitLab, GitHub actions and Jenkins read.
"""

from __future__ import annotations

import datetime
import socket
import xml.etree.ElementTree as ET
from typing import Any

from zombiewatch.errors import writing
from zombiewatch.modes.base import PASS
from zombiewatch.report import (
    Report,
    RunResult,
    _ns_pid,
    command_line,
    describe_leak,
    render_run,
)

MAX_LISTED = 50  # leaked zombies spelled out in one failure; `none` leaks thousands


def _failed(run: RunResult, check: bool) -> bool:
    return not run.met_expectation if check else run.verdict != PASS


def _failure_text(run: RunResult, check: bool) -> tuple[str, str, str]:
    """(message, type, body) of a failed run: ZombiesLeaked when a zombie
    rule decided it (exit 1), LoadFailed when only the load did (exit 4)."""
    zombies = run.zombie_verdict != run.expected if check else bool(run.zombie_rules())
    lines = [f"rule: {rule}" for rule in run.failed_rules]
    if not zombies:
        message, kind = run.load_rules()[0], "LoadFailed"
    elif check and run.zombie_verdict == PASS:
        # Every rule held, and that is the failure: the mode is expected to
        # leak. Say what was checked against what, so the run's "PASS"
        # does not read as a bug of the tool (--max-leaked 100000 on none).
        held = _rules_held(run)
        message = (
            f"mode {run.mode} is expected to FAIL (it leaks by design), but every zombie rule"
            f" held: {'; '.join(held)}"
        )
        kind = "ZombiesLeaked"
        lines = [f"expected: FAIL, {run.summary}" if run.summary else "expected: FAIL"]
        lines += [f"held: {rule}" for rule in held] + [f"rule: {r}" for r in run.load_rules()]
    elif check:
        message = (
            f"mode {run.mode} is expected to PASS, but a zombie rule failed:"
            f" {run.zombie_rules()[0]}"
        )
        kind = "ZombiesLeaked"
    else:
        message, kind = f"{run.leaked_count} zombie(s) leaked", "ZombiesLeaked"
    return message, kind, "\n".join(lines + _leaks_by_parent(run))


def _rules_held(run: RunResult) -> list[str]:
    """The zombie rules a run was held to, each with the figure that met it."""
    held = [
        f"leaked: {run.leaked_count} zombie(s) outlived the {run.settle:g} s settle window,"
        f" within --max-leaked {run.max_leaked}"
    ]
    if run.grace is not None:
        held.append(
            f"grace: the oldest zombie stayed one for {run.max_age:.3g} s,"
            f" within --grace {run.grace:g}"
        )
    if run.max_zombies is not None:
        held.append(
            f"max-zombies: at most {run.monitor.peak_zombies} zombies at once,"
            f" under --max-zombies {run.max_zombies}"
        )
    return held


def _leaks_by_parent(run: RunResult) -> list[str]:
    """The leaked zombies under their parents, each parent's command line
    once (up to MAX_LISTED zombies in all), in the text report's words."""
    leaked: list[dict[str, Any]] = run.to_dict()["leaked_zombies"]
    groups: dict[int, list[dict[str, Any]]] = {}
    for zombie in leaked:
        groups.setdefault(zombie["ppid"], []).append(zombie)
    lines: list[str] = []
    room = MAX_LISTED
    for ppid, zombies in sorted(groups.items(), key=lambda item: -len(item[1])):
        parent = run.monitor.parents.get(ppid)
        command = command_line(parent.cmdline) if parent and parent.cmdline else ""
        name = command or (parent.name if parent else "?")
        pid = _ns_pid(run.ns_pids, ppid)
        lines.append(f"parent {pid}, {len(zombies)} leaked zombie(s), command: {name}")
        shown, room = zombies[:room], max(0, room - len(zombies))
        # No parents given: its command line is the line above, once.
        lines += [f"  leaked zombie {describe_leak(z, {}, run.ns_pids)}" for z in shown]
        if len(shown) < len(zombies):
            lines.append(f"  ... and {len(zombies) - len(shown)} more of this parent")
    if run.leaked_unlisted:
        lines.append(f"... and {run.leaked_unlisted} more, counted but not listed")
    return lines


def to_junit(report: Report, suite: str = "zombiewatch") -> str:
    """Return the report as a JUnit XML document."""
    failures = sum(_failed(run, report.check) for run in report.runs)
    errors = sum(not run.measured for run in report.runs)
    total_time = sum(run.duration + run.settle for run in report.runs)
    counts = {
        "tests": str(len(report.runs) + len(report.skipped)),
        "failures": str(failures),
        "errors": str(errors),
        "time": f"{total_time:.3f}",
    }
    root = ET.Element("testsuites", {"name": suite, **counts})
    testsuite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": suite,
            **counts,
            "skipped": str(len(report.skipped)),
            "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
        },
    )
    for run in report.runs:
        case = ET.SubElement(
            testsuite,
            "testcase",
            classname=f"{suite}.{'modes' if run.expected is not None else 'run'}",
            name=run.name or run.mode,
            time=f"{run.duration + run.settle:.3f}",
        )
        if not run.measured:
            ET.SubElement(
                case, "error", message="not measured", type="NotMeasured"
            ).text = f"no connection of {run.flood.get('connections')} got its right answer"
        elif _failed(run, report.check):
            message, kind, body = _failure_text(run, report.check)
            ET.SubElement(case, "failure", message=message, type=kind).text = body
        ET.SubElement(case, "system-out").text = render_run(run)
    for mode, why in report.skipped.items():
        case = ET.SubElement(testsuite, "testcase", classname=f"{suite}.modes", name=mode, time="0")
        ET.SubElement(case, "skipped", message=why)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: Report, path: str) -> None:
    """Write the report as JUnit XML at ``path``; raise ZombiewatchError if it cannot."""
    with writing(path), open(path, "w", encoding="utf-8") as f:
        f.write(to_junit(report))
