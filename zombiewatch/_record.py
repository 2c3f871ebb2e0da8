"""The built-in server's own account of each child, as ground truth.

With ``serve --record FILE`` (or ``--ground-truth`` on the default
command) the server appends one line per moment it knows first-hand: ``F``
when ``fork`` returned the child's pid in the parent, ``X`` in the child
just before ``os._exit``, ``R`` when a ``waitpid`` of any mode returned the
child. Each line is ``KIND PID MONOTONIC_NS``, written with one
``os.write`` to a file opened with O_APPEND, so the parent's and the
children's lines never interleave within a line. The monitor's figures
are then checked against what the program itself did.

Imports only ``os``, ``time`` and ``_stats``: the forking server loads this module.
"""

from __future__ import annotations

import os
import time

from zombiewatch import _stats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class Recorder:
    """Append the server's fork, exit and reap moments to ``path``."""

    def __init__(self, path: str) -> None:
        # Not O_CLOEXEC-sensitive: workers fork but never exec, and each
        # writes its own X line through the inherited descriptor.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def note(self, kind: bytes, pid: int) -> None:
        """Write one ``KIND PID NS`` line now."""
        os.write(self.fd, b"%s %d %d\n" % (kind, pid, time.monotonic_ns()))

    def wrap_waitpid(self) -> None:
        """Note every child a ``waitpid`` of this process returns.

        Every mode reaps through ``os.waitpid`` looked up when it runs, so
        wrapping it here sees each reap whatever the mode, without a hook
        in the modes' interface for an instrument.
        """
        original = os.waitpid
        note = self.note

        def waitpid(pid: int, options: int) -> tuple[int, int]:
            result = original(pid, options)
            if result[0] > 0:
                note(b"R", result[0])
            return result

        os.waitpid = waitpid


def read(path: str) -> dict[int, dict[str, int]]:
    """Return ``{pid: {"F": ns, "X": ns, "R": ns}}`` from a record file."""
    children: dict[int, dict[str, int]] = {}
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                kind, pid, ns = parts[0].decode(), int(parts[1]), int(parts[2])
                children.setdefault(pid, {})[kind] = ns
    return children


def _summary_us(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": None if not ordered else round(_stats.percentile(ordered, 50) or 0.0, 1),
        "p99": None if not ordered else round(_stats.percentile(ordered, 99) or 0.0, 1),
        "max": None if not ordered else round(ordered[-1], 1),
    }


def compare(
    truth: dict[int, dict[str, int]], observed: dict[int, list[tuple[int, int, bool]]] | None
) -> dict[str, object]:
    """Set the server's record beside what the monitor observed.

    ``observed`` is the event monitor's ``{pid: [(exit_ns, reap_ns, exact)]}``
    (None when the run sampled: only the record's own figures are given).
    A child is *missed* when the server forked it and the monitor never saw
    it at all; *untimed* when the monitor saw it but the watch ended before
    its reap. For each child timed exactly: ``error_us`` is |observed
    lifetime - recorded lifetime|; it splits into ``exit_after_x_us``, the
    kernel's exit event after the child's last line (the teardown of an
    exiting process, which is part of its life, not yet a zombie's), and
    ``reap_error_us``, |the monitor's wake-up at the reap - the server's
    ``waitpid`` return| (either side may be descheduled for a moment).
    """
    complete = {pid: t for pid, t in truth.items() if {"F", "X", "R"} <= t.keys()}
    result: dict[str, object] = {
        "children": sum(1 for t in truth.values() if "F" in t),
        "complete": len(complete),
        "lifetime_us": _summary_us((t["R"] - t["X"]) / 1000 for t in complete.values()),
    }
    if observed is None:
        return result
    forked = [pid for pid, t in truth.items() if "F" in t]
    missed = [pid for pid in forked if pid not in observed]
    errors, exits, reaps = [], [], []
    unwatched = untimed = 0
    for pid, t in complete.items():
        if not observed.get(pid, [True]):
            untimed += 1
        for exit_ns, reap_ns, exact in observed.get(pid, ()):
            if not exact:
                unwatched += 1
                continue
            errors.append(abs((reap_ns - exit_ns) - (t["R"] - t["X"])) / 1000)
            exits.append((exit_ns - t["X"]) / 1000)
            reaps.append(abs(reap_ns - t["R"]) / 1000)
    result.update(
        observed=len(forked) - len(missed),
        missed=len(missed),
        exact=len(errors),
        unwatched=unwatched,
        untimed=untimed,
        error_us=_summary_us(errors),
        exit_after_x_us=_summary_us(exits),
        reap_error_us=_summary_us(reaps),
    )
    return result
