"""Helpers shared by the e2e tests: spawning, polling, process-table checks."""

from __future__ import annotations

import importlib.resources
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from zombiewatch import _record, targets
from zombiewatch._backoff import poll_until

PYTHON = sys.executable

# Both ways a run holds what it starts (zombiewatch/_containment.py): its
# cgroup v2 group where one is writable (this machine), and the guard's
# own records everywhere else.
CONTAINMENT = [
    pytest.param({}, id="cgroup-or-guard"),
    pytest.param({"ZOMBIEWATCH_NO_CGROUP": "1"}, id="guard-only"),
]


def call_until(fn: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Call ``fn`` with exponential backoff until it returns a truthy value.

    The default deadline is for a busy machine shared with other jobs: it
    costs nothing when the condition comes true at once, as it usually does.
    """
    value: list[Any] = [None]

    def truthy() -> Any:
        value[0] = fn()
        return value[0]

    if not poll_until(truthy, timeout, max_step=0.1):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value[0]


def zombiewatch(
    *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zombiewatch ARGS`` to completion (``env``: added to ours)."""
    return subprocess.run(
        [PYTHON, "-m", "zombiewatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )


def run_schema() -> dict[str, Any]:
    """The JSON Schema of ``--json`` reports, as the package ships it."""
    path = importlib.resources.files("zombiewatch") / "schema" / "run.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def valid_report(stdout: str) -> dict[str, Any]:
    """Parse a ``--json`` report and check it against the packaged schema."""
    import jsonschema  # the test extra's: imported where a test needs it

    data: dict[str, Any] = json.loads(stdout)
    jsonschema.validate(data, run_schema())
    return data


def session_members(sid: int) -> list[psutil.Process]:
    """Every process, zombies included, whose session id is ``sid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def zombie_children(pid: int) -> list[psutil.Process]:
    """The zombies among ``pid``'s children, read independently of zombiewatch."""
    found: list[psutil.Process] = []
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def server_pids(stderr: str) -> list[int]:
    """Server pids from the runner's "server pid N listening" log lines."""
    return [
        int(line.split("server pid ")[1].split()[0])
        for line in stderr.splitlines()
        if "server pid " in line
    ]


def assert_nothing_left(server_pid: int, timeout: float = 30.0) -> None:
    """The server and its whole session are gone: no process, no zombie."""
    call_until(
        lambda: not session_members(server_pid),
        timeout,
        what=f"session {server_pid} to be empty",
    )


def read_ready_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> dict[str, Any]:
    """Read the server's JSON ready line from its stdout."""
    assert proc.stdout is not None
    try:
        return targets.read_ready_line(proc.stdout.fileno(), timeout)
    except (EOFError, TimeoutError) as err:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited with {proc.returncode} before it listened"
            ) from None
        raise AssertionError(f"{err}, waiting for the server's ready line") from None


def read_to_end(sock: socket.socket) -> bytes:
    """Read ``sock`` until EOF, or until a reset that followed the reply.

    A server that refuses a client, or stops reading a huge line, closes
    with the client's bytes unread, which resets the connection; Linux
    still hands over what came before the reset (docs/FACTS.md, Slow
    clients and running out).
    """
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def read_terminal(primary: int, timeout: float = 30.0) -> bytes:
    """Read everything written to a pty until its other side closes."""
    output = b""
    while select.select([primary], [], [], timeout)[0]:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        output += chunk
    return output


def unique_sleep() -> str:
    """A ``sleep`` argument no other process on the machine runs: a marker."""
    return f"{300 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6:06d}"


def sleeping(marker: str) -> list[psutil.Process]:
    """The live ``sleep MARKER`` processes, wherever they are (a daemon's too)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", marker]:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
    return found


def kill_sleeping(marker: str) -> None:
    """Kill what a failed test left of ``sleep MARKER``."""
    for proc in sleeping(marker):
        proc.kill()


def open_fds() -> int:
    """This process's open descriptors, pidfds left out: the plugin's event
    reader (zombiewatch/_feeds.py) opens one for each child a test starts
    and closes it, on its own thread, when the child is collected."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[pidfd]":
                count += 1
        except FileNotFoundError:
            pass  # the listing's own descriptor, closed by now
    return count


# What a ground-truth record's R line carries (zombiewatch/_record.py): the
# zombie's CPU time, and its run-queue wait where zombiewatch._pump reaps
# (os.wait4, where the extension was not built, tells no wait).
REAP_TIMES = {"Rcpu"} if _record._reaper() is _record._wait4 else {"Rcpu", "Rwait"}
