"""With pytest-xdist, each worker guards the tests it runs: its own descendants."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

pytest.importorskip("xdist", reason="pytest-xdist is not installed (it is in the test extra)")

WORKER_TESTS = textwrap.dedent(
    """
    import os

    def test_leak():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not collected
        with open(f"{__name__}.pid", "w") as f:
            f.write(f"{os.getpid()} {pid} {os.environ['PYTEST_XDIST_WORKER']}")

    def test_clean_after_the_leak_on_the_same_worker():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    """
)


def test_each_worker_guards_its_own_tests(pytester, run) -> None:
    pytester.makepyfile(test_one=WORKER_TESTS, test_two=WORKER_TESTS)

    # loadfile: a file's tests run in order on one worker.
    result = run("-n", "2", "--dist", "loadfile", "--zombiewatch", "--zombiewatch-settle=0.2")

    result.assert_outcomes(passed=4, errors=2)
    # The ERRORS part only: the short summary below it repeats every message.
    errors = result.stdout.str().split("short test summary info")[0]
    sections = errors.split("ERROR at teardown of ")[1:]
    for module in ("test_one", "test_two"):
        worker_pid, zombie, worker = (pytester.path / f"{module}.pid").read_text().split()
        [section] = [s for s in sections if f"pid {zombie} 'python" in s]
        assert section.startswith("test_leak ")
        assert f"[{worker}] linux" in section  # xdist names the worker that ran it
        assert f"child of pid {worker_pid} (this test process)" in section
    assert "test_clean_after_the_leak_on_the_same_worker" not in "".join(
        line for line in result.outlines if line.startswith("ERROR")
    )
    # The controller counts the tests of both workers.
    assert "zombiewatch: 4 tests guarded, 2 tests leaked 2 zombies" in result.outlines
