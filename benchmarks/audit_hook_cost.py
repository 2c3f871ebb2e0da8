"""Measure what the plugin's audit hook costs (#21).

In one fresh interpreter, interleaved over several rounds so that whatever
else the machine does hits every arm alike:

- an audit event that starts no process (``os.putenv``: pytest raises it
  on every test), with no hook (the baseline, measured in a child process
  that never installs one) and with the plugin's hook installed, outside a
  guarded test and inside one;
- a process-starting event (``os.fork``, raised through ``sys.audit``),
  recorded: the stack walk and the record; from a test's frame under 40
  of pytest's (where the walk stops), and from 40 frames of user code
  (the walk keeps 8);
- a real ``subprocess.Popen(["true"]).wait()``, with the recorder off and
  on: the hook's share of starting a process.

Prints medians and ratios. Not part of the test suite.

    python benchmarks/audit_hook_cost.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CALLS = 200_000
STARTS = 20_000
POPENS = 200


def per_call_ns(calls: int, event: str) -> float:
    audit = sys.audit
    started = time.perf_counter_ns()
    for _ in range(calls):
        audit(event, "K", "V")
    return (time.perf_counter_ns() - started) / calls


def deep(depth: int, then: object) -> float:
    """Call ``then`` from ``depth`` frames down."""
    if depth:
        return deep(depth - 1, then)
    return then()  # type: ignore[operator]


# As under pytest: frames of pytest's own (a file under site-packages/_pytest/)
# below the test's one frame, where the recorder stops walking.
_AS_PYTEST: dict[str, Any] = {}
exec(
    compile(
        "def runner(depth, then):\n"
        "    if depth:\n"
        "        return runner(depth - 1, then)\n"
        "    return then()\n",
        os.path.join("site-packages", "_pytest", "python.py"),
        "exec",
    ),
    _AS_PYTEST,
)


def as_a_test(then: object) -> float:
    """Call ``then`` from one frame of this file under 40 of "pytest"."""
    return _AS_PYTEST["runner"](40, lambda: then())  # type: ignore[operator]


def starts_ns(rec: Any) -> float:
    """Per recorded start, in batches below the recorder's cap (past it a
    start is not recorded, and costs nothing)."""
    batch = 500
    total = 0.0
    for _ in range(STARTS // batch):
        rec.starts.clear()
        total += per_call_ns(batch, "os.fork") * batch
    rec.starts.clear()
    return total / STARTS


def popen_us() -> float:
    started = time.perf_counter_ns()
    for _ in range(POPENS):
        subprocess.Popen(["true"]).wait()
    return (time.perf_counter_ns() - started) / POPENS / 1000


def baseline(rounds: int) -> list[float]:
    """The no-hook figure, from a child that never installs the hook."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import audit_hook_cost as b; "
        f"print(*[b.per_call_ns({CALLS}, 'os.putenv') for _ in range({rounds})])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()
    none = baseline(opts.rounds)

    from zombiewatch import _starts

    rec = _starts.recorder(os.getcwd())
    idle, active, record, in_test, popen_off, popen_on = [], [], [], [], [], []
    for _ in range(opts.rounds):
        rec.end()
        idle.append(per_call_ns(CALLS, "os.putenv"))
        popen_off.append(popen_us())
        rec.begin()
        active.append(per_call_ns(CALLS, "os.putenv"))
        record.append(deep(40, lambda: starts_ns(rec)))
        in_test.append(as_a_test(lambda: starts_ns(rec)))
        popen_on.append(popen_us())
        rec.starts.clear()
        rec.end()

    med = statistics.median
    print(f"{opts.rounds} rounds, medians:")
    print(f"  audit event, no hook:                  {med(none):7.0f} ns")
    print(
        f"  audit event, hook, no guarded test:    {med(idle):7.0f} ns"
        f"  (+{med(idle) - med(none):.0f} ns)"
    )
    print(
        f"  audit event, hook, in a guarded test:  {med(active):7.0f} ns"
        f"  (+{med(active) - med(none):.0f} ns)"
    )
    print(f"  a start recorded, in a test under pytest: {med(in_test) / 1000:4.2f} µs")
    print(f"  a start recorded, 40 frames of own code: {med(record) / 1000:5.2f} µs (8 kept)")
    print(
        f"  Popen(['true']).wait(): recorder off {med(popen_off):.0f} µs, on "
        f"{med(popen_on):.0f} µs, ratio {med(popen_on) / med(popen_off):.3f}"
    )


if __name__ == "__main__":
    main()
