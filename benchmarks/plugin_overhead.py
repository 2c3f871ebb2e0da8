"""Measure what ``--zombiewatch`` costs a suite of trivial tests (#4).

Generates N trivial tests (and a suite a tenth that size) in a temporary
directory and runs pytest on them in a fresh process, without and with
``--zombiewatch``, interleaved (A B A B ...) so that whatever else the
machine does hits both alike. The cost per test is the slope between the
two sizes, guarded minus unguarded: what a session pays once (importing
the plugin and psutil) cancels out. Printed, as the median over the
rounds, for the CPU time the pytest process used (user + system, from
``getrusage``), the session time pytest reports and the wall time of the
whole command: on a machine shared with other jobs the last two swing by
a second from one run to the next, the CPU time far less.

With ``--child``, the session keeps one long-lived child process (started
before the first test, as a daemon a conftest starts would be): every look
then walks the tree through the monitor instead of finding no child at all.

With ``--compare DIR`` (repeatable), each round also runs the suite with
``--zombiewatch`` and the ``zombiewatch`` package found in DIR first on
``PYTHONPATH`` (say, ``git archive main zombiewatch | tar -x -C DIR``): the
cost per test of another version, measured in the same rounds, so that a
busy machine hits both alike, and their ratio.

With ``--within``, one suite run with ``--zombiewatch`` whose every other
test ``@pytest.mark.zombiewatch(enabled=False)`` exempts, each test timed
in the pytest process itself (thread CPU time and wall time around its
whole protocol): per run, the median guarded test minus the median
exempted one. An exempted test still pays what the plugin does for every
test (reading its marker), so this is what guarding adds to that (before
#21's wrappers, an audit hook also cost every test of the session, guarded
or not, a few µs this does not show; ``start_cost.py`` prices what the
wrappers cost per process start). Guarded and unguarded tests then share the
process and the moment, which whole-run timings on a shared machine
cannot resolve below tens of microseconds. With ``--compare``, the same
for each other version, in the same rounds.

Not part of the test suite: a timing is a measurement, not an assertion.

    python benchmarks/plugin_overhead.py [--tests 2000] [--rounds 7] [--child] [--compare DIR]
    python benchmarks/plugin_overhead.py --within [--sample] [--tests 2000] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SESSION_TIME = re.compile(r" in (\d+(?:\.\d+)?)s")


# A child for the whole session, started before the first test's baseline.
CHILD_CONFTEST = """
import subprocess

def pytest_configure(config):
    config.zw_child = subprocess.Popen(["sleep", "3600"])

def pytest_unconfigure(config):
    config.zw_child.kill()
    config.zw_child.wait()
"""


# --within: --zombiewatch, every other test exempted by the marker, each
# test's protocol timed in the process itself, so that guarded and
# unguarded tests share the process, its caches and the machine's state of
# the moment.
WITHIN_CONFTEST = """
import json, os, time
import pytest

TIMES = {"guarded": [], "plain": []}

@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    yield
    cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    kind = "plain" if item.get_closest_marker("zombiewatch") else "guarded"
    TIMES[kind].append((cpu, wall))

def pytest_unconfigure(config):
    with open(os.environ["ZW_TIMES"], "w") as f:
        json.dump(TIMES, f)
"""


# --sample: the guards sample /proc, as where kernel events cannot be had.
SAMPLED = """
import zombiewatch._guard

zombiewatch._guard._with_events = lambda: False
"""


def write_within_suite(root: Path, tests: int, sample: bool) -> None:
    """``tests`` trivial tests, every other one exempted by the marker."""
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(WITHIN_CONFTEST + (SAMPLED if sample else ""))
    per_file = 50
    for start in range(0, tests, per_file):
        body = "import pytest\n\n\n"
        for i in range(start, min(start + per_file, tests)):
            mark = "@pytest.mark.zombiewatch(enabled=False)\n" if i % 2 else ""
            body += f"{mark}def test_{i}():\n    assert True\n\n\n"
        (root / f"test_trivial_{start // per_file:03d}.py").write_text(body)


def run_within(root: Path, package: str | None) -> tuple[float, float, float]:
    """One run: the median guarded minus the median unguarded test, in µs of
    (thread CPU time, wall time), and the median of the paired differences
    in thread CPU time (each guarded test minus the exempted test run right
    after it: neighbours share the machine's state of the moment, which on
    a busy machine moves both medians by more than the plugin costs)."""
    times = root / "times.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["ZW_TIMES"] = str(times)
    if package is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zombiewatch"]
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"the suite did not pass ({proc.returncode}):\n{proc.stdout}")
    found = json.loads(times.read_text())
    guarded, plain = found["guarded"], found["plain"]
    cpu, wall = (
        (statistics.median(g[i] for g in guarded) - statistics.median(p[i] for p in plain)) / 1000
        for i in (0, 1)
    )
    # With an odd count the last guarded test has no exempted one after it.
    pairs = zip(guarded, plain, strict=False)
    paired = statistics.median(g[0] - p[0] for g, p in pairs) / 1000
    return cpu, wall, paired


def within(opts: argparse.Namespace) -> None:
    """The --within measurement: print the cost per guarded test of each version."""
    arms: list[tuple[str, str | None]] = [("this tree", None)]
    arms += [(package, package) for package in opts.compare]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in arms}
    with tempfile.TemporaryDirectory(prefix="zombiewatch-bench-") as tmp:
        root = Path(tmp)
        write_within_suite(root, opts.tests, opts.sample)
        for _, package in arms:
            run_within(root, package)  # warm the page cache and .pyc files
        for i in range(opts.rounds):
            for name, package in arms:
                results[name].append(run_within(root, package))
            print(
                f"round {i + 1}: "
                + ", ".join(
                    f"{n} {r[-1][0]:.1f}/{r[-1][1]:.1f} µs, paired {r[-1][2]:.1f} µs"
                    for n, r in results.items()
                ),
                file=sys.stderr,
            )
    how = "sampling /proc" if opts.sample else "kernel events where they work"
    print(
        f"{opts.tests} trivial tests ({how}), every other one exempted by the marker, "
        f"{opts.rounds} interleaved runs; per run the median guarded test minus the median "
        "exempted one, "
        "then the median of the runs (thread CPU time / wall time); and the median of the "
        "paired differences (each guarded test minus the exempted one after it), then the "
        "median of the runs:"
    )
    first = opts.compare[0] if opts.compare else None
    for name, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        pairs = statistics.median(r[2] for r in runs)
        line = f"  {name:20}  {cpu:6.1f} µs / {wall:6.1f} µs, paired {pairs:6.1f} µs"
        if first is not None and name != first:
            base = results[first]
            ratios = [
                statistics.median(a[i] / b[i] for a, b in zip(runs, base, strict=True) if b[i] > 0)
                for i in (0, 2)
            ]
            line += (
                f"  (CPU, per run, against {first}: median ratio {ratios[0]:.2f}, "
                f"paired {ratios[1]:.2f})"
            )
        print(line)


def write_suite(root: Path, tests: int, child: bool) -> None:
    """Write ``tests`` trivial tests, 50 to a file, and a pytest.ini that pins rootdir."""
    (root / "pytest.ini").write_text("[pytest]\n")
    if child:
        (root / "conftest.py").write_text(CHILD_CONFTEST)
    per_file = 50
    for start in range(0, tests, per_file):
        count = min(per_file, tests - start)
        body = "".join(f"def test_{start + i}():\n    assert True\n\n\n" for i in range(count))
        (root / f"test_trivial_{start // per_file:03d}.py").write_text(body)


def run_once(
    root: Path, tests: int, guarded: bool, package: str | None = None
) -> tuple[float, float, float]:
    """Run the suite once; return (wall seconds, session seconds pytest
    reports, CPU seconds of the pytest process).

    ``package``: a directory holding another ``zombiewatch`` to measure.
    """
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if guarded:
        args.append("--zombiewatch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if package is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    out = proc.stdout
    if proc.returncode != 0 or f"{tests} passed" not in out:
        raise SystemExit(f"the suite did not pass ({proc.returncode}):\n{out}{proc.stderr}")
    # The summary's wording of before #17, and since.
    said = (f"{tests} tests guarded, 0 leaked zombies", f"{tests} tests guarded, no test leaked")
    if guarded and not any(f"zombiewatch: {line}" in out for line in said):
        raise SystemExit(f"--zombiewatch did not guard every test:\n{out}")
    match = SESSION_TIME.findall(out)
    if not match:
        raise SystemExit(f"no session time in pytest's output:\n{out}")
    return wall, float(match[-1]), cpu


def per_test_us(
    big: list[tuple[float, float, float]],
    small: list[tuple[float, float, float]],
    base_big: list[tuple[float, float, float]],
    base_small: list[tuple[float, float, float]],
    index: int,
    extra_tests: int,
) -> float:
    """The median over rounds of what one more test costs on top of the
    baseline: the slope between the two suite sizes, so that what a
    session pays once (importing the plugin, psutil) cancels out."""
    return statistics.median(
        ((b[index] - s[index]) - (bb[index] - bs[index])) / extra_tests * 1e6
        for b, s, bb, bs in zip(big, small, base_big, base_small, strict=True)
    )


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000, help="trivial tests in the suite")
    parser.add_argument("--small", type=int, default=0, help="the small suite (default tests/10)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (at least 3)")
    parser.add_argument("--child", action="store_true", help="keep one child for the session")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="DIR",
        help="also measure the zombiewatch package in DIR (repeatable)",
    )
    parser.add_argument(
        "--within",
        action="store_true",
        help="exempt every other test by the marker and time each test in the process",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="with --within: the guards sample /proc instead of hearing kernel events",
    )
    opts = parser.parse_args()
    if opts.rounds < 3:
        parser.error("--rounds must be at least 3: a median of fewer says little")
    if opts.within:
        within(opts)
        return
    small = opts.small or max(1, opts.tests // 10)
    arms: list[tuple[str, bool, str | None]] = [("off", False, None), ("on", True, None)]
    arms += [(package, True, package) for package in opts.compare]

    with tempfile.TemporaryDirectory(prefix="zombiewatch-bench-") as tmp:
        roots = {opts.tests: Path(tmp) / "big", small: Path(tmp) / "small"}
        for size, root in roots.items():
            root.mkdir()
            write_suite(root, size, opts.child)
            for _, guarded, package in arms:  # warm the page cache and .pyc files
                run_once(root, size, guarded, package)
        runs: dict[tuple[str, int], list[tuple[float, float, float]]] = {
            (name, size): [] for name, _, _ in arms for size in roots
        }
        for i in range(opts.rounds):
            for size, root in roots.items():
                for name, guarded, package in arms:
                    runs[name, size].append(run_once(root, size, guarded, package))
            print(
                f"round {i + 1}: CPU s, {opts.tests}/{small} tests: "
                + ", ".join(
                    f"{name} {runs[name, opts.tests][-1][2]:.3f}/{runs[name, small][-1][2]:.3f}"
                    for name, _, _ in arms
                ),
                file=sys.stderr,
            )

    child = ", one live child in the tree" if opts.child else ""
    print(
        f"{opts.tests} and {small} trivial tests{child}, {opts.rounds} interleaved rounds; "
        "cost per guarded test (the slope between the two sizes, minus the unguarded "
        "slope), median of the rounds:"
    )
    extra = opts.tests - small
    off_big, off_small = runs["off", opts.tests], runs["off", small]
    for label, index in (("CPU time", 2), ("session time", 1), ("wall time", 0)):
        figures = {
            name: per_test_us(
                runs[name, opts.tests], runs[name, small], off_big, off_small, index, extra
            )
            for name, guarded, _ in arms
            if guarded
        }
        text = ", ".join(f"{name} {us:.1f} µs" for name, us in figures.items())
        if opts.compare:
            first = opts.compare[0]
            if figures[first] > 0:
                text += f"; on / {first}: {figures['on'] / figures[first]:.2f}"
        off_us = statistics.median(r[index] for r in off_big) / opts.tests * 1e6
        print(f"  {label:12}  {text}  (an unguarded test: {off_us:.0f} µs)")


if __name__ == "__main__":
    main()
