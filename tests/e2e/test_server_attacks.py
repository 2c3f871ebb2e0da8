"""The built-in server under attack, in every mode: slow clients, no
descriptors left, no process left. Good clients must hear an answer or
``ERROR server busy``, never silence and never a bare reset.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import PYTHON, call_until, read_ready_line, read_to_end, zombie_children
from zombiewatch import modes
from zombiewatch.modes.base import PASS
from zombiewatch.server import BUSY

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]  # the checkout, for another uid's PYTHONPATH

# Generous: a good client waits behind the attackers ahead of it in the
# backlog (each freed within --conn-timeout plus the 2 s lingering close),
# on a machine that may be busy with other work.
GOOD_TIMEOUT = 60.0


def _available(mode: str) -> None:
    if not modes.get(mode).available():
        pytest.skip(f"{mode}: {modes.get(mode).unavailable_reason()}")


def _ask(port: int, line: bytes, timeout: float = GOOD_TIMEOUT) -> bytes:
    """One well-behaved client: send ``line``, half-close, read to the end.

    Raises ``TimeoutError`` if the server says nothing for ``timeout``
    seconds: the silence these tests exist to rule out.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            # EPIPE, ECONNRESET, ENOTCONN: refused (and reset) before we
            # finished sending; its reply is still there to read.
            pass
        return read_to_end(sock)


def _server(
    spawn,
    config: Mapping[str, object],
    preexec: Callable[[], None] | None = None,
    python: str = PYTHON,
    env: dict[str, str] | None = None,
):
    proc = spawn(
        [python, "-m", "zombiewatch.server", json.dumps(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=preexec, env=env,
    )  # fmt: skip
    return proc, read_ready_line(proc, timeout=30)["port"]


def _stop(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """SIGTERM the server; return its stopped line and its log."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return json.loads(out.splitlines()[-1]), err


# -- slowloris ----------------------------------------------------------------------


class Trickler(threading.Thread):
    """A slowloris client: get one answer (so it holds a worker), then send a
    byte every ``every`` seconds, well inside the idle timeout, without ever
    ending the line; reconnect whenever the server hangs up, until stopped."""

    def __init__(self, port: int, stop: threading.Event, every: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.every = port, stop, every
        self.held = threading.Event()  # a worker answered it at least once
        self.connections = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=GOOD_TIMEOUT) as s:
                    self.connections += 1
                    s.sendall(b"ping\n")
                    if s.recv(5) == b"PING\n":
                        self.held.set()
                    while not self.stop.wait(self.every):
                        s.sendall(b"x")
            except OSError:
                continue  # the server ended it (as it must): come back


@pytest.mark.parametrize("mode", modes.names())
def test_slowloris_cannot_lock_out_good_clients(spawn, mode: str) -> None:
    _available(mode)
    config = {
        "mode": mode,
        "max_children": 3,
        "idle_timeout": 5.0,  # never reached: the attackers send every 0.3 s
        "conn_timeout": 1.5,
        "child_delay": 0.0,
    }
    server, port = _server(spawn, config)
    stop = threading.Event()
    attackers = [Trickler(port, stop) for _ in range(3)]
    for attacker in attackers:
        attacker.start()
    try:
        # `wait` serves one client at a time: one attacker holds it all.
        holding = attackers[:1] if mode == "wait" else attackers
        for attacker in holding:
            assert attacker.held.wait(GOOD_TIMEOUT), "an attacker never got a worker"
        # Every worker is now held by a trickling client. Good clients keep
        # coming for a while; each is answered in turn (none times out).
        answers: list[bytes] = []
        attack_ends = time.monotonic() + 4.0  # past a deadline and a lingering close
        while time.monotonic() < attack_ends or len(answers) < 2:
            answers.append(_ask(port, b"good %d\n" % len(answers)))
        for n, answer in enumerate(answers):
            assert answer == b"GOOD %d\n" % n, (n, answer)
        # The attack was real: the server kept ending trickling connections,
        # which came back.
        assert sum(a.connections for a in attackers) > 3
    finally:
        stop.set()
        # Stopped first: attackers still queued for a worker are reset
        # rather than waited for.
        stopped, _log = _stop(server)
        for attacker in attackers:
            attacker.join(timeout=30)
    assert stopped["refused"] == 0


def test_conn_timeout_ends_a_trickling_client_with_an_error_line(spawn) -> None:
    server, port = _server(spawn, {"mode": "sigchld", "idle_timeout": 5.0, "conn_timeout": 1.0})
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
        sock.sendall(b"one\n")
        # Trickle until the server gives up on us, reading what it says.
        give_up = time.monotonic() + GOOD_TIMEOUT
        while not received.endswith(b" s\n") and time.monotonic() < give_up:
            try:
                sock.sendall(b"x")
                chunk = sock.recv(100)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    assert received == b"ONE\nERROR connection open for 1 s\n"
    _stop(server)


def test_conn_timeout_bounds_a_client_that_reads_slowly(spawn) -> None:
    # Slowloris on the way back: 50 MB of lines sent in bulk, their answers
    # read 64 KiB at a time ten times a second, just fast enough that no
    # send of the worker waits out the idle timeout, so without a deadline
    # the worker is held for well over a minute. One worker only: a good
    # client gets it only once the deadline has freed it.
    config = {"mode": "sigchld", "idle_timeout": 5.0, "conn_timeout": 1.0, "max_children": 1}
    server, port = _server(spawn, config)
    results: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=GOOD_TIMEOUT) as slow:
        bulk = (b"y" * 1000 + b"\n") * 50_000
        threading.Thread(target=_send_quietly, args=(slow, bulk), daemon=True).start()
        assert slow.recv(1) == b"Y"  # it holds the worker
        good = threading.Thread(target=lambda: results.append(_ask(port, b"good\n")))
        good.start()
        while good.is_alive():
            try:
                if not slow.recv(65536):
                    break
            except OSError:
                break  # reset: the worker gave up with our lines unread
            time.sleep(0.1)
        good.join(timeout=GOOD_TIMEOUT)
    assert results == [b"GOOD\n"]
    _stop(server)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server ended the connection


# -- out of descriptors ----------------------------------------------------------------

IDLE = 2000  # connections that say nothing, opened before the good clients
NOFILE = 256  # the server's descriptor limit, soft and hard (ulimit -n 256)

# Each case makes the server's parent run out of descriptors its own way:
# pidfd holds one per live child, thread one per connection, and with
# --max-children every mode holds one per worker (the end of its life pipe).
FD_CASES = [
    pytest.param("pidfd", None, id="pidfd"),
    pytest.param("thread", None, id="thread"),
    *(
        pytest.param(name, 5000, id=f"{name}-max-children")
        for name in modes.names()
        # `wait` serves one client at a time by design: a silent client
        # starves everyone behind it until its idle timeout. That is the
        # accept starvation the mode exists to show, not a descriptor fault.
        if name != "wait"
    ),
]


def _nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.mark.parametrize(("mode", "max_children"), FD_CASES)
def test_out_of_descriptors_good_clients_hear_busy_or_an_answer(
    spawn, mode: str, max_children: int | None
) -> None:
    _available(mode)
    config = {
        "mode": mode,
        "max_children": max_children,
        "idle_timeout": 300.0,  # the idle clients hold their workers all along
        "conn_timeout": 600.0,
        "child_delay": 0.0,
    }
    server, port = _server(spawn, config, preexec=_nofile)
    idle = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=GOOD_TIMEOUT))
        answers = [_ask(port, b"good %d\n" % n) for n in range(10)]
        for n, answer in enumerate(answers):
            assert answer in (b"GOOD %d\n" % n, BUSY), (n, answer)
        assert server.poll() is None, "the server died"
    finally:
        for sock in idle:
            sock.close()
    if modes.get(mode).expected == PASS and mode != "double-fork":
        # The idle clients' workers now see EOF and end; a reaping mode
        # collects every one, those it could not watch for want of a
        # descriptor included (pidfd), without a further client to wake it.
        call_until(lambda: not zombie_children(server.pid), 60, "every worker collected")
    stopped, log = _stop(server)
    # It did run out, and said so to the clients it could not take on.
    assert stopped["refused"] > 0, log
    assert "cannot serve a connection" in log


# -- a fork that fails for real ---------------------------------------------------------


def _unused_uid() -> int:
    """A uid that no process runs as, so RLIMIT_NPROC counts only ours."""
    used = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info["uids"]}
    used |= {p.info["uids"].effective for p in psutil.process_iter(["uids"]) if p.info["uids"]}
    return next(uid for uid in range(47000, 48000) if uid not in used)


def _become(uid: int) -> Callable[[], None]:
    """A preexec_fn that drops root for good, groups and real, effective and
    saved ids alike: the process then has no capability that would exempt
    it from RLIMIT_NPROC."""

    def preexec() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return preexec


def _python_for(uid: int) -> tuple[str, dict[str, str]]:
    """An interpreter ``uid`` may run, with the environment that lets it
    import this checkout (the server needs nothing but the standard library).

    A virtualenv under /root is out of reach of other users; the system's
    Python usually is not.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    system = shutil.which("python3", path=os.defpath) or ""
    for python in dict.fromkeys([PYTHON, getattr(sys, "_base_executable", PYTHON), system]):
        if not python:
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "import zombiewatch.server"], env=env, preexec_fn=_become(uid),
                capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except PermissionError:
            continue  # under /root, say
        if probe.returncode == 0:
            return python, env
    pytest.skip(f"no Python that uid {uid} may run imports zombiewatch")


def test_double_fork_failed_inner_fork_answers_busy_and_is_counted(spawn) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the server as an unprivileged uid")
    uid = _unused_uid()
    python, env = _python_for(uid)

    def nproc_2() -> None:
        # RLIMIT_NPROC counts the processes of the real uid, and root is
        # exempt: so a uid of our own with room for 2. The server is one;
        # its middle child the second; the middle child's fork of the
        # worker then fails with EAGAIN, every time.
        resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
        _become(uid)()

    config = {"mode": "double-fork", "child_delay": 0.0}
    server, port = _server(spawn, config, preexec=nproc_2, python=python, env=env)
    for n in range(5):
        assert _ask(port, b"hello %d\n" % n) == BUSY
    assert server.poll() is None
    stopped, log = _stop(server)
    assert stopped == {"event": "stopped", "refused": 5, "accept_pauses": 0}
    assert "the middle child could not fork the worker" in log
    # Logged once for the burst, not once per client.
    assert log.count("cannot serve a connection") == 1
