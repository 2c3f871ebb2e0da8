"""Measure what ``--zombiewatch`` costs a suite of trivial tests (#4).

Generates N trivial tests in a temporary directory and runs pytest on them
in a fresh process, without and with ``--zombiewatch``, interleaved
(A B A B ...) so that whatever else the machine does hits both alike.
Prints the median of each, their ratio and the overhead per test, for the
wall time of the whole command and for the session time pytest reports
(which leaves out interpreter start-up and plugin loading).

With ``--child``, the session keeps one long-lived child process (started
before the first test, as a daemon a conftest starts would be): every look
then walks the tree through the monitor instead of finding no child at all.

Not part of the test suite: a timing is a measurement, not an assertion.

    python benchmarks/plugin_overhead.py [--tests 500] [--rounds 5] [--child]
"""

from __future__ import annotations

import argparse
import os
import re
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


def run_once(root: Path, tests: int, guarded: bool) -> tuple[float, float]:
    """Run the suite once; return (wall seconds, session seconds pytest reports)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if guarded:
        args.append("--zombiewatch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    out = proc.stdout
    if proc.returncode != 0 or f"{tests} passed" not in out:
        raise SystemExit(f"the suite did not pass ({proc.returncode}):\n{out}{proc.stderr}")
    if guarded and f"zombiewatch: {tests} tests guarded, 0 leaked zombies" not in out:
        raise SystemExit(f"--zombiewatch did not guard every test:\n{out}")
    match = SESSION_TIME.findall(out)
    if not match:
        raise SystemExit(f"no session time in pytest's output:\n{out}")
    return wall, float(match[-1])


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=500, help="trivial tests in the suite")
    parser.add_argument("--rounds", type=int, default=5, help="A/B pairs (at least 3)")
    parser.add_argument("--child", action="store_true", help="keep one child for the session")
    opts = parser.parse_args()
    if opts.rounds < 3:
        parser.error("--rounds must be at least 3: a median of fewer says little")

    with tempfile.TemporaryDirectory(prefix="zombiewatch-bench-") as tmp:
        root = Path(tmp)
        write_suite(root, opts.tests, opts.child)
        run_once(root, opts.tests, guarded=False)  # warm the page cache and .pyc files
        run_once(root, opts.tests, guarded=True)
        off: list[tuple[float, float]] = []
        on: list[tuple[float, float]] = []
        for i in range(opts.rounds):
            off.append(run_once(root, opts.tests, guarded=False))
            on.append(run_once(root, opts.tests, guarded=True))
            print(
                f"round {i + 1}: off {off[-1][0]:.3f} s (session {off[-1][1]:.2f} s), "
                f"on {on[-1][0]:.3f} s (session {on[-1][1]:.2f} s)",
                file=sys.stderr,
            )

    child = ", one live child in the tree" if opts.child else ""
    print(f"{opts.tests} trivial tests{child}, {opts.rounds} interleaved rounds, medians:")
    for label, index in (("wall time", 0), ("session time", 1)):
        a = statistics.median(r[index] for r in off)
        b = statistics.median(r[index] for r in on)
        per_test_ms = (b - a) / opts.tests * 1000
        print(
            f"  {label:12}  off {a:.3f} s  on {b:.3f} s  ratio {b / a:.3f}  "
            f"overhead {per_test_ms:.3f} ms per test"
        )


if __name__ == "__main__":
    main()
