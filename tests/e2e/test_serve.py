"""`zombiewatch serve` and `zombiewatch flood` on their own."""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import subprocess
import threading

import psutil
import pytest

from tests.helpers import PYTHON, read_ready_line, zombiewatch

pytestmark = pytest.mark.e2e


def _talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_serve_answers_in_upper_case_and_stops_on_sigterm(serve) -> None:
    proc, ready = serve("--mode", "sigchld")
    assert ready["event"] == "listening"
    assert ready["host"] == "127.0.0.1"
    assert ready["pid"] == proc.pid  # serve execs the server: the pid is the server's

    assert _talk(ready["port"], b"hello\nZombie watch 1\n") == b"HELLO\nZOMBIE WATCH 1\n"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_server_process_imports_no_psutil_or_asyncio(serve) -> None:
    # Every module the forking parent holds is paid on every fork.
    proc, ready = serve("--mode", "sigchld")
    assert _talk(ready["port"], b"x\n") == b"X\n"
    with open(f"/proc/{proc.pid}/maps") as maps:
        mapped = maps.read()
    assert "_psutil" not in mapped
    assert "_asyncio" not in mapped


@pytest.mark.parametrize(
    ("sent", "error"),
    [
        (b"a" * (64 * 1024 + 10) + b"\n", b"ERROR line longer than 65536 bytes\n"),
        (b"nul \x00 byte\n", b"ERROR line has NUL or non-UTF-8 bytes\n"),
        (b"bad \xff\xfe utf8\n", b"ERROR line has NUL or non-UTF-8 bytes\n"),
    ],
)
def test_bad_lines_end_the_connection_with_an_error_line(serve, sent: bytes, error: bytes) -> None:
    _proc, ready = serve("--mode", "sigchld")
    assert _talk(ready["port"], b"ok\n" + sent + b"never answered\n") == b"OK\n" + error
    # The server is still there for the next client.
    assert _talk(ready["port"], b"still\n") == b"STILL\n"


@pytest.mark.parametrize("mode", ["sigchld", "thread"])
def test_line_boundaries_whatever_the_reads(serve, mode: str) -> None:
    # Workers read whatever has arrived and answer every complete line, so
    # the answer must not depend on how the client's bytes are split.
    _proc, ready = serve("--mode", mode)
    port = ready["port"]
    longest = b"b" * (64 * 1024 - 1) + b"\n"  # exactly max_line with its newline
    assert _talk(port, longest) == longest.upper()
    assert _talk(port, b"one\ntwo\nlast without newline") == b"ONE\nTWO\nLAST WITHOUT NEWLINE"
    many = b"".join(b"line %d \xc3\xa9\n" % n for n in range(2000))
    assert _talk(port, many) == many.upper()
    # A two-byte character split across two writes is still one valid line.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"caf\xc3")
        sock.sendall(b"\xa9 ok\n")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(100):
            reply += chunk
    assert reply == b"CAF\xc3\xa9 OK\n"


def test_flood_checks_every_reply(serve) -> None:
    _proc, ready = serve("--mode", "sigchld")
    proc = zombiewatch(
        "flood", "--port", str(ready["port"]), "--connections", "200", "--concurrency", "20",
        "--lines", "3", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] == 200
    assert result["failed"] == 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]


class _LowerCaseEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.lower())


def test_flood_exits_1_on_wrong_replies() -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _LowerCaseEcho) as wrong:
        wrong.daemon_threads = True
        thread = threading.Thread(target=wrong.serve_forever, daemon=True)
        thread.start()
        try:
            port = wrong.server_address[1]
            proc = zombiewatch("flood", "--port", str(port), "--connections", "5", "--json")
        finally:
            wrong.shutdown()
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["failures"] == {"wrong reply": 5}


def test_flood_against_a_closed_port_fails_each_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        proc = zombiewatch("flood", "--port", str(port), "--connections", "3", "--json")
    assert proc.returncode == 3  # nothing got through: nothing was measured
    assert json.loads(proc.stdout)["failures"] == {"connection refused": 3}
    assert proc.stderr.count("\n") == 1


def test_port_in_use_is_exit_3_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = zombiewatch("serve", "--port", str(port))
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Address already in use" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--mode", "no-such-mode"],
        ["--connections", "-1"],
        ["--concurrency", "0"],
        ["serve", "--mode", "bogus"],
        ["flood", "--port", "0"],
    ],
)
def test_bad_input_is_exit_2_with_one_line(args: list[str]) -> None:
    proc = zombiewatch(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_sigterm_stops_serve_at_once_even_with_an_idle_client(serve) -> None:
    # The server stops the workers it forked itself instead of waiting for
    # their clients. Idle and connection timeouts far beyond the wait below,
    # so that a server that waited for them fails however long a busy host
    # takes to stop it.
    proc, ready = serve("--mode", "sigchld", "--idle-timeout", "3600", "--conn-timeout", "3600")
    with socket.create_connection(("127.0.0.1", ready["port"]), timeout=10) as idle:
        idle.sendall(b"one\n")
        assert idle.recv(100) == b"ONE\n"
        worker = psutil.Process(proc.pid).children()
        assert len(worker) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not psutil.pid_exists(worker[0].pid)


@pytest.mark.parametrize(
    "args",
    [
        ["--settle", "nan"],
        ["--interval", "inf"],
        ["--timeout", "nan"],
        ["flood", "--port", "9", "--deadline", "nan"],
        ["serve", "--host", ""],
        ["serve", "--host", "é..x"],
        ["flood", "--port", "9", "--host", "a" * 64 + ".com"],
    ],
)
def test_non_finite_numbers_and_bad_hosts_are_usage_errors(args: list[str]) -> None:
    proc = zombiewatch(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_listening_beyond_loopback_warns_that_anyone_gets_an_echo(
    spawn, host: str, warned: bool
) -> None:
    proc = spawn(
        [PYTHON, "-m", "zombiewatch", "serve", "--host", host, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert read_ready_line(proc)["host"] == host
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=10)
    assert ("anyone who can reach it gets an echo service" in err) is warned


def test_the_forking_parent_imports_nothing_it_does_not_need() -> None:
    # The server module imports every mode. typing and threading are not
    # needed to serve, and every module the parent holds is paid on every fork.
    heavy = ("typing", "threading", "psutil", "asyncio", "click")
    probe = f"import sys, zombiewatch.server; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
