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

# Written into every inner run's directory. Collects leftover zombies with
# WNOHANG only: it never blocks, and it never kills what is still running.
REAP_AT_EXIT = textwrap.dedent(
    """
    import os

    def pytest_unconfigure(config):
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


def pids(pytester, name: str) -> list[int]:
    """Pids the inner tests wrote to ``NAME.pid``, one a line."""
    return [int(line) for line in (pytester.path / f"{name}.pid").read_text().split()]


def error_text(result: pytest.RunResult, test: str) -> str:
    """The ERROR-at-teardown section of ``test`` in the inner run's output."""
    out = result.stdout.str()
    header = rf"_+ ERROR at teardown of {re.escape(test)} _+\n"
    match = re.search(header + r"(.*?)(?=\n_{3,} |\n=+ )", out, re.S)
    assert match, f"no teardown error for {test} in:\n{out}"
    return match.group(1)
