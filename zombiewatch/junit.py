"""Render a report as JUnit XML, the format CI systems show natively, and
write it to ``--junit-xml``'s file.

One ``<testcase>`` per run: per mode for the default command, one for the
program of ``run`` or the process of ``watch``. A run fails when its
verdict fails (with ``--check``: when it misses its expected verdict); the
failure text names the rules that failed and the leaked zombies with
their parents. Unavailable modes are ``<skipped>``; a run that could not
be measured is an ``<error>``. The shape follows the Ant/Jenkins JUnit
schema that GitLab, GitHub actions and Jenkins read.
"""

from __future__ import annotations

import datetime
import socket
import xml.etree.ElementTree as ET

from zombiewatch.errors import writing
from zombiewatch.modes.base import PASS
from zombiewatch.report import Report, RunResult, describe_leak, render_run

MAX_LISTED = 50  # leaked zombies spelled out in one failure; `none` leaks thousands


def _failed(run: RunResult, check: bool) -> bool:
    return not run.met_expectation if check else run.verdict != PASS


def _failure_text(run: RunResult, check: bool) -> tuple[str, str, str]:
    """(message, type, body) of a failed run: ZombiesLeaked when a zombie
    rule decided it (exit 1), LoadFailed when only the load did (exit 4)."""
    zombies = run.zombie_verdict != run.expected if check else bool(run.zombie_rules())
    if not zombies:
        message, kind = run.load_rules()[0], "LoadFailed"
    elif check:
        verdict, expected = run.zombie_verdict.upper(), str(run.expected).upper()
        message, kind = f"verdict {verdict}, expected {expected}", "ZombiesLeaked"
    else:
        message, kind = f"{run.leaked_count} zombie(s) leaked", "ZombiesLeaked"
    lines = [f"rule: {rule}" for rule in run.failed_rules]
    # The same words and numbers as the text report's "leaked" lines.
    for zombie in run.to_dict()["leaked_zombies"][:MAX_LISTED]:
        text = describe_leak(zombie, run.monitor.parents, run.ns_pids, width=10_000)
        lines.append(f"leaked zombie {text}")
    if run.leaked_count > MAX_LISTED:
        lines.append(f"... and {run.leaked_count - MAX_LISTED} more")
    return message, kind, "\n".join(lines)


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
            name=run.mode,
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
