"""Nothing outlives a run: not after it ends, not after Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import subprocess

import psutil
import pytest

from tests.helpers import PYTHON, assert_nothing_left, call_until, zombie_children

pytestmark = pytest.mark.e2e


def _start_long_run(spawn, mode: str) -> tuple[subprocess.Popen[str], int]:
    runner = spawn(
        # Far more connections than the test waits for: it is interrupted.
        [PYTHON, "-m", "zombiewatch", "--mode", mode, "--connections", "200000",
         "--concurrency", "20"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    line = runner.stderr.readline()
    assert "server pid" in line, line
    server_pid = int(line.split("server pid ")[1].split()[0])
    return runner, server_pid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_runner_leaves_nothing(spawn, sig: signal.Signals) -> None:
    runner, server_pid = _start_long_run(spawn, "none")
    # Mid-flood: the `none` server already holds zombies.
    call_until(lambda: len(zombie_children(server_pid)) >= 20, what="zombies under load")

    runner.send_signal(sig)

    assert runner.wait(timeout=30) == 130
    assert "interrupted" in runner.stderr.read()
    assert not psutil.pid_exists(server_pid)
    assert_nothing_left(server_pid)


def test_sigkill_of_the_runner_takes_the_server_down(spawn) -> None:
    runner, server_pid = _start_long_run(spawn, "sigchld")
    call_until(lambda: psutil.Process(server_pid).children(), what="workers under load")

    runner.kill()
    runner.wait(timeout=10)

    # PR_SET_PDEATHSIG turns the runner's death into SIGTERM for the server,
    # which stops its workers; its orphans go to PID 1.
    call_until(lambda: _exited(server_pid), timeout=30, what="server exit")
    # Its own zombie waits for PID 1, which may collect only every few seconds.
    assert_nothing_left(server_pid, timeout=30)


def test_a_server_that_dies_mid_run_is_not_measured(spawn) -> None:
    runner, server_pid = _start_long_run(spawn, "sigchld")
    call_until(lambda: psutil.Process(server_pid).children(), what="workers under load")

    psutil.Process(server_pid).kill()

    assert runner.wait(timeout=60) == 3
    assert "the server exited during the run" in runner.stderr.read()
    assert_nothing_left(server_pid)


def _exited(pid: int) -> bool:
    """Gone, or dead and waiting for PID 1, which collects when it will."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
