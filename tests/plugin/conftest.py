"""Shared by the plugin tests: run pytest on generated files, in a fresh process.

Each test module says ``pytest_plugins = ["pytester"]`` itself, as
pytest-timeout's tests do: pytest refuses ``pytest_plugins`` in a conftest
below the rootdir. Every inner run gets a conftest that collects, when the run ends, the
zombies its tests leaked on purpose: otherwise they would pass to PID 1
when the inner pytest exits, and PID 1 here reaps only every few seconds.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable

import pytest

# Written into every inner run's directory. Kills the children the inner
# tests left running on purpose and listed in ``kill-at-exit.pid``, then
# collects leftover zombies with WNOHANG only: it never blocks.
REAP_AT_EXIT = textwrap.dedent(
    """
    import os
    import pathlib
    import signal

    def pytest_unconfigure(config):
        path = pathlib.Path("kill-at-exit.pid")
        if path.exists():
            for pid in map(int, path.read_text().split()):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:  # ours, still running
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                except ChildProcessError:
                    pass  # collected already, or not our child
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # no child left
            if pid == 0:
                return  # children left, none of them exited
    """
)


@pytest.fixture
def run(pytester, monkeypatch) -> Callable[..., pytest.RunResult]:
    """Run pytest in a subprocess on the files written to ``pytester``."""
    # The plugin is found through its entry point, as for a user.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    conftest = pytester.path / "conftest.py"
    if not conftest.exists():
        conftest.write_text(REAP_AT_EXIT)

    # Well inside pytest-timeout's 180 s, and far beyond the few seconds an
    # inner session takes on a quiet host.
    def run_pytest(*args: str, timeout: float = 120) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)

    return run_pytest


# The top of the generated test files of test_blame and test_starts.
PRELUDE = textwrap.dedent(
    """
    import asyncio
    import gc
    import multiprocessing
    import os
    import subprocess
    import sys
    import threading

    import pytest

    KEEP = []  # leaked children stay referenced, as in a real suite

    # A child that runs until its stdin closes: the test decides when it exits.
    UNTIL_EOF = [sys.executable, "-c", "import sys; sys.stdin.read()"]


    def record(name, pid):
        with open(name + ".pid", "a") as f:
            f.write(f"{pid}\\n")


    def exited(pid):
        # Until the child has exited, without collecting it.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


    def leak(proc):
        # Keep it, say its pid, and let it exit: a zombie until the end.
        KEEP.append(proc)
        record("leak", proc.pid)
        exited(proc.pid)

    """
)

# A process that forks a child which exits at once, prints the child's pid,
# keeps it a zombie until its own stdin closes, then exits, collecting it
# or not (COLLECT).
MIDDLE = """
import os, sys
g = os.fork()
if g == 0:
    os._exit(0)
os.waitid(os.P_PID, g, os.WEXITED | os.WNOWAIT)
print(g, flush=True)
sys.stdin.read()
if COLLECT:
    os.waitpid(g, 0)
"""


# Appended to an inner run's conftest: its guards sample /proc, as where
# kernel events cannot be had, instead of listening to them.
SAMPLED = textwrap.dedent(
    """
    import zombiewatch._guard

    zombiewatch._guard._with_events = lambda: False
    """
)


def observe_by(pytester, how: str) -> None:
    """Make the inner run's guards watch by ``how``: "events" where the
    machine has them (else the test is skipped), or "sample"."""
    if how == "sample":
        with (pytester.path / "conftest.py").open("a") as f:
            f.write(SAMPLED)
        return
    from zombiewatch import observe

    reason = observe.events_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no kernel events here: {reason}")


def pids(pytester, name: str) -> list[int]:
    """Pids the inner tests wrote to ``NAME.pid``, one a line."""
    return [int(line) for line in (pytester.path / f"{name}.pid").read_text().split()]


def error_text(result: pytest.RunResult, test: str) -> str:
    """The ERROR-at-teardown section of ``test`` in the inner run's output."""
    out = result.stdout.str()
    header = rf"_+ ERROR at teardown of {re.escape(test)} _+\n"
    match = re.search(header + r"(.*?)(?=\n_{3,} |\n=+ )", out, re.S)
    assert match, f"no teardown error for {test} in:\n{out}"
    section = match.group(1)
    # Every leak of these tests names the line that started it (#21).
    assert "started at: unknown" not in section, section
    return section
