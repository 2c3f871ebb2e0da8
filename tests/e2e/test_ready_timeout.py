"""``run --ready-timeout``: how long a slow starter may take to listen (#20)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_run_watch import free_port
from tests.helpers import PYTHON, assert_nothing_left, zombiewatch

pytestmark = pytest.mark.e2e

# A program that takes SLOW seconds to listen, as a JVM or a preloading app
# server does, then serves nothing until it is stopped.
SLOW_STARTER = """
import socket, sys, time
time.sleep(float(sys.argv[2]))
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
time.sleep(600)
"""


def _run(port: int, slow: float, *options: str):
    return zombiewatch(
        "run", "--json", "--wait-port", str(port), "--duration", "0.5", "--settle", "0.1",
        *options, "--", PYTHON, "-c", SLOW_STARTER, str(port), str(slow),
        timeout=300,
    )  # fmt: skip


def test_a_starter_slower_than_the_default_is_waited_for() -> None:
    port = free_port()
    # 11 s: longer than the default 10 s wait, which would end the run with exit 3.
    proc = _run(port, 11, "--ready-timeout", "120")
    assert proc.returncode == 0, proc.stderr
    [run] = json.loads(proc.stdout)["runs"]
    assert run["verdict"] == "pass"


def test_a_starter_slower_than_the_ready_timeout_is_exit_3() -> None:
    port = free_port()
    proc = _run(port, 60, "--ready-timeout", "0.5")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    last = proc.stderr.splitlines()[-1]
    assert last == (
        f"zombiewatch: the command did not listen on 127.0.0.1:{port} within 0.5 s"
        " (--ready-timeout waits longer)"
    )
    started = [line for line in proc.stderr.splitlines() if " as pid " in line]
    assert_nothing_left(int(started[0].rsplit(" ", 1)[1]))
