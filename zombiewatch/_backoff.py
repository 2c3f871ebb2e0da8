"""Waiting for a condition: exponential backoff against a deadline.

Every wait of the project polls this way, never with one fixed sleep: a
condition that is true at once costs one call, one that takes a while is
seen within a few milliseconds, and a busy machine only makes the wait
longer, never wrong. The clock and the sleep are parameters so that tests
can drive a wait with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FIRST_STEP = 0.001  # seconds before the second call
MAX_STEP = 0.05  # seconds between two calls at most


def poll_until(
    predicate: Callable[[], object],
    timeout: float,
    max_step: float = MAX_STEP,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Call ``predicate`` until it is true or ``timeout`` seconds pass.

    The first call is at once; the gaps double from ``FIRST_STEP`` up to
    ``max_step`` and never overshoot the deadline. Returns whether the
    predicate came true; it is always called at least once.
    """
    deadline = clock() + timeout
    step = FIRST_STEP
    while True:
        if predicate():
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        sleep(min(step, remaining))
        step = min(step * 2, max_step)
