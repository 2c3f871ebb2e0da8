"""The progress line on stderr: on a terminal only."""

from __future__ import annotations

import os
import pty
import subprocess

import pytest

from tests.helpers import PYTHON, read_terminal, zombiewatch

pytestmark = pytest.mark.e2e

ARGS = ["--mode", "none", "--connections", "600", "--concurrency", "20", "--settle", "0.2"]


def test_progress_line_when_stderr_is_a_terminal() -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [PYTHON, "-m", "zombiewatch", *ARGS],
        stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(secondary)
    try:
        err = read_terminal(primary)
    finally:
        os.close(primary)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = err.decode().split("\r\x1b[K")
    assert any("/600 connections, " in line and "zombies now" in line for line in lines)
    assert "600/600 connections, " in err.decode()  # drawn again when the load ends
    assert b"\r\x1b[K" not in out  # the report on stdout stays clean


def test_no_progress_line_when_stderr_is_not_a_terminal() -> None:
    proc = zombiewatch(*ARGS)
    assert "\x1b[K" not in proc.stderr
    assert "zombies now" not in proc.stderr
