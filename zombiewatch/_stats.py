"""Percentiles for latencies and zombie lifetimes (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (0-100) by the nearest-rank method.

    Nearest rank reports a value that was really observed, which is what a
    reader expects of "p99 lifetime 12 ms". Returns None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    # q * n first: 7 / 100 * 100 is 7.000000000000001 in floating point.
    rank = max(1, math.ceil(q * len(ordered) / 100))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """Return p50, p99 and max of durations given in seconds, in ms."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "p50": ms(percentile(values_s, 50)),
        "p99": ms(percentile(values_s, 99)),
        "max": ms(max(values_s)) if values_s else None,
    }
