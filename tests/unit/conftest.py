"""Unit tests start no process: forking or spawning here is a test failure."""

from __future__ import annotations

import os
import subprocess

import pytest


class StartedAProcess(AssertionError):
    """A unit test tried to fork or spawn."""


@pytest.fixture(autouse=True)
def no_forking(monkeypatch):
    def refuse(*args, **kwargs):
        raise StartedAProcess(f"unit tests must not start processes: {args!r}")

    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse, raising=False)
    monkeypatch.setattr(subprocess, "Popen", refuse)
