"""Measure what the plugin's start recorder costs (#21).

The recorder catches process starts with wrappers of the standard
library's starting functions and an ``os.register_at_fork`` callback
(``zombiewatch/_starts.py``), not with an audit hook: nothing runs per
test, only per process start. In one fresh interpreter, interleaved over
several rounds so that whatever else the machine does hits every arm alike:

- a call through a wrapper (``wrap_spawn`` around a function that does
  nothing) against the bare call, with the recorder idle (outside a
  guarded test): what every start pays once the plugin has guarded a test;
- the fork callback, idle;
- a start recorded, through the same wrapper: the stack walk and the
  record; from a test's frame under 40 of pytest's (where the walk
  stops), and from 40 frames of user code (the walk keeps 8);
- a real ``subprocess.Popen(["true"]).wait()`` with the recorder idle and
  recording, one of each in turn: its share of starting a process.

Prints medians. Not part of the test suite.

    python benchmarks/start_cost.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

CALLS = 200_000
STARTS = 20_000
POPENS = 200


def per_call_ns(calls: int, call: Callable[..., object]) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call("/bin/true", ["true"], {})
    return (time.perf_counter_ns() - started) / calls


def deep(depth: int, then: Callable[[], float]) -> float:
    """Call ``then`` from ``depth`` frames down."""
    if depth:
        return deep(depth - 1, then)
    return then()


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


def as_a_test(then: Callable[[], float]) -> float:
    """Call ``then`` from one frame of this file under 40 of "pytest"."""
    return _AS_PYTEST["runner"](40, lambda: then())  # type: ignore[no-any-return]


def starts_ns(rec: Any, wrapped: Callable[..., object]) -> float:
    """Per recorded start, in batches below the recorder's cap (past it a
    start is not recorded, and costs less)."""
    batch = 500
    total = 0.0
    for _ in range(STARTS // batch):
        rec.starts.clear()
        total += per_call_ns(batch, wrapped) * batch
    rec.starts.clear()
    return total / STARTS


def callback_ns(rec: Any) -> float:
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        rec.before_fork()
    return (time.perf_counter_ns() - started) / CALLS


def popens_us(rec: Any) -> tuple[float, float]:
    """The median ``Popen(["true"]).wait()``, recorder idle and recording,
    one of each in turn: a start takes a millisecond or more, and the
    machine's load moves it by more than the record costs."""
    idle, recording = [], []
    for _ in range(POPENS):
        for active, times in ((False, idle), (True, recording)):
            rec.active = active
            started = time.perf_counter_ns()
            subprocess.Popen(["true"]).wait()
            times.append((time.perf_counter_ns() - started) / 1000)
    rec.active = False
    rec.starts.clear()
    return statistics.median(idle), statistics.median(recording)


def main() -> None:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()

    from zombiewatch import _starts

    rec = _starts.recorder(os.getcwd())

    def nothing(*args: object) -> int:
        return 0

    wrapped = _starts.wrap_spawn(rec, nothing)
    bare, idle, callback, record, in_test, popen_off, popen_on = [], [], [], [], [], [], []
    for _ in range(opts.rounds):
        rec.end()
        bare.append(per_call_ns(CALLS, nothing))
        idle.append(per_call_ns(CALLS, wrapped))
        callback.append(callback_ns(rec))
        rec.begin()
        record.append(deep(40, lambda: starts_ns(rec, wrapped)))
        in_test.append(as_a_test(lambda: starts_ns(rec, wrapped)))
        rec.starts.clear()
        rec.end()
        off, on = popens_us(rec)
        popen_off.append(off)
        popen_on.append(on)

    med = statistics.median
    print(f"{opts.rounds} rounds, medians:")
    print(f"  a call, no wrapper:                    {med(bare):7.0f} ns")
    print(
        f"  a call through a wrapper, idle:        {med(idle):7.0f} ns"
        f"  (+{med(idle) - med(bare):.0f} ns)"
    )
    print(f"  the fork callback, idle:               {med(callback):7.0f} ns")
    print(f"  a start recorded, in a test under pytest: {med(in_test) / 1000:4.2f} µs")
    print(f"  a start recorded, 40 frames of own code: {med(record) / 1000:5.2f} µs (8 kept)")
    print(
        f"  Popen(['true']).wait(): recorder idle {med(popen_off):.0f} µs, recording "
        f"{med(popen_on):.0f} µs, ratio {med(popen_on) / med(popen_off):.3f}"
    )


if __name__ == "__main__":
    main()
