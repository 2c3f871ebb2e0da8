"""Waiting with backoff against a deadline, and probes that do not cache a
passing shortage of descriptors (no forking)."""

from __future__ import annotations

import errno
import os

import pytest

from zombiewatch import _platform
from zombiewatch._backoff import FIRST_STEP, MAX_STEP, poll_until


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_condition_true_at_once_costs_one_call_and_no_sleep():
    t = FakeTime()
    calls = []

    def true() -> bool:
        calls.append(1)
        return True

    assert poll_until(true, 5.0, clock=t.clock, sleep=t.sleep)
    assert (len(calls), t.sleeps) == (1, [])


def test_the_steps_double_up_to_the_cap_and_stop_at_the_deadline():
    t = FakeTime()
    assert not poll_until(lambda: False, 1.0, clock=t.clock, sleep=t.sleep)
    assert t.sleeps[0] == FIRST_STEP
    assert t.sleeps[1] == 2 * FIRST_STEP
    assert max(t.sleeps) == MAX_STEP
    assert t.now == pytest.approx(1.0)  # never past the deadline


def test_a_condition_that_comes_true_later_is_seen():
    t = FakeTime()
    assert poll_until(lambda: t.now >= 0.3, 1.0, clock=t.clock, sleep=t.sleep)
    assert 0.3 <= t.now < 0.3 + MAX_STEP


def test_a_zero_timeout_still_asks_once():
    t = FakeTime()
    calls = []
    assert not poll_until(lambda: calls.append(1), 0.0, clock=t.clock, sleep=t.sleep)
    assert (len(calls), t.sleeps) == (1, [])


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no os.pidfd_open here")
def test_a_probe_out_of_descriptors_says_no_for_now_and_asks_again(monkeypatch):
    real = os.pidfd_open
    _platform.can_use_pidfd.cache_clear()  # type: ignore[attr-defined]
    try:
        emfile = OSError(errno.EMFILE, "Too many open files")

        def out_of_fds(pid: int, flags: int = 0) -> int:
            raise emfile

        monkeypatch.setattr(os, "pidfd_open", out_of_fds)
        assert _platform.can_use_pidfd() is False
        monkeypatch.setattr(os, "pidfd_open", real)
        assert _platform.can_use_pidfd() is True  # asked again: not cached
    finally:
        _platform.can_use_pidfd.cache_clear()  # type: ignore[attr-defined]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no os.pidfd_open here")
def test_a_probe_refused_for_good_is_cached(monkeypatch):
    real = os.pidfd_open
    _platform.can_use_pidfd.cache_clear()  # type: ignore[attr-defined]
    try:

        def filtered(pid: int, flags: int = 0) -> int:
            raise PermissionError(errno.EPERM, "Operation not permitted")  # seccomp

        monkeypatch.setattr(os, "pidfd_open", filtered)
        assert _platform.can_use_pidfd() is False
        monkeypatch.setattr(os, "pidfd_open", real)
        assert _platform.can_use_pidfd() is False  # the answer stands
    finally:
        _platform.can_use_pidfd.cache_clear()  # type: ignore[attr-defined]
