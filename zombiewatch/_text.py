"""Small pieces of text for people, shared by every renderer and the log.

Kept free of imports beyond ``sys``: the flooder process renders its one
line with these and must stay lean (docs/FACTS.md, Flooders).
"""

from __future__ import annotations

import sys


def clip(text: str, width: int) -> str:
    """Return ``text`` cut to ``width`` characters, "..." marking the cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


def number(value: float | None) -> str:
    """A figure as it is, or "-" where there is none."""
    return "-" if value is None else f"{value:g}"


def figure(value: float | None) -> str:
    """A measured figure to three significant digits, for people: 18.442 is
    "18.4", 695.563 is "696", 0.0284 is "0.0284", 1234.6 is "1235"; "-"
    where there is none.

    Every printed latency, rate and lifetime goes through here, so a
    figure reads the same wherever it is printed (the flooder's line, the
    report); JSON keeps the figures as measured.
    """
    if value is None:
        return "-"
    if value == 0:
        return "0"
    # Digits after the point for three significant ones; none past the
    # point for 1000 and more: an integer is never shown in e-notation.
    magnitude = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    if magnitude:
        decimals = max(0, 3 - magnitude)
    else:
        decimals = 3
        scaled = abs(value)
        while scaled < 0.1 and decimals < 12:
            scaled *= 10
            decimals += 1
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def failure_list(failures: dict[str, int]) -> str:
    """Failed connections by reason: "3 connection refused, 1 timeout"."""
    return ", ".join(f"{n} {why}" for why, n in failures.items())


# Why some of our own output could not be written (a closed stream, a full
# disk): the command then exits 3, never with a verdict (docs/DESIGN.md,
# Exit codes). One entry per stream, the first failure.
_lost: dict[str, str] = {}


def output_lost(stream: str, err: BaseException) -> None:
    """Record that writing to our ``stream`` ("stdout", "stderr") failed."""
    _lost.setdefault(stream, getattr(err, "strerror", None) or str(err) or type(err).__name__)


def lost_output() -> dict[str, str]:
    """{stream: why} for each of our streams a write to failed."""
    return dict(_lost)


def forget_lost_output() -> None:
    """Start a new command with nothing lost (``cli.main`` called in-process again)."""
    _lost.clear()


def write(stream: str, text: str) -> None:
    """Write ``text`` to our "stdout" or "stderr" and flush; a failure is
    recorded (``lost_output``), never raised."""
    try:
        out = getattr(sys, stream)
        out.write(text)
        out.flush()
    except (OSError, ValueError) as err:
        output_lost(stream, err)


def log(message: str) -> None:
    """Write one log line to stderr; a failure is recorded, never raised."""
    write("stderr", f"zombiewatch: {message}\n")
