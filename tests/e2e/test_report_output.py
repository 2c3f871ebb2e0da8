"""The text and JSON reports of real runs, as a newcomer reads them (#20):
the built-in server named by its mode, leaks one line per parent, command
lines a shell can take back, the `--mode all` table within a terminal's
width, figures rounded alike by the flooder and the report, and the JSON
checked against the schema the package ships."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import pty
import re
import socket
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

import pytest

import zombiewatch
from tests.helpers import (
    PYTHON,
    call_until,
    read_terminal,
    server_pids,
    valid_report,
    zombie_children,
)
from tests.helpers import (
    zombiewatch as run_zombiewatch,
)
from zombiewatch import modes
from zombiewatch._text import figure
from zombiewatch.report import shell_join

pytestmark = pytest.mark.e2e

# A program that leaves N zombies and waits for its stdin to close: a leak
# with one parent, whatever it is run by. Its arguments carry a space, a
# quote and a newline, which a copied command line must keep.
LEAKER = (
    "import os, sys\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    if os.fork() == 0:\n"
    "        os._exit(0)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)
# The same, collecting its zombies once its stdin closes: none escapes the test.
WATCHED = LEAKER + (
    "while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        break\n"
)
ODD_ARGS = ["it's a name", "two\nlines"]
COMM = Path(PYTHON).name[:15]  # the name a zombie of our interpreter has


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _figures(line: str, unit: str) -> list[str]:
    return re.findall(rf"(-?[\d.]+) {unit}", line)


def _line(text: str, label: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(f"{label:<11}")]
    return line


def _leak_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("leaked     ")]


# -- the default command ------------------------------------------------------------


def test_none_names_its_server_and_groups_its_leaks_on_one_line() -> None:
    proc = run_zombiewatch("--mode", "none", "--connections", "30", "--settle", "0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [server] = server_pids(proc.stderr)
    text = proc.stdout
    assert "-m zombiewatch.server" not in text
    assert '"child_d' not in text
    parent = _line(text, "parent")
    assert parent.startswith(f"parent     pid {server} zombiewatch server, mode none:"), parent
    found = re.search(r"leaked (\d+) after", _line(text, "zombies"))
    assert found, text
    leaked = int(found[1])
    assert leaked > 5  # more than one line's worth of pids
    [line] = _leak_lines(text)  # thirty zombies of one parent: one line
    prefix = (
        f"leaked     {leaked} zombies ({COMM}) of parent {server} zombiewatch server, mode none"
    )
    assert line.startswith(prefix + ": pids "), line
    assert f" and {leaked - 5} more, zombies for " in line
    assert len(re.findall(r"\d+(?=,| and)", line.split(": pids ")[1])) == 5


def test_the_flooder_and_the_report_round_latencies_alike(serve) -> None:
    # The same rule in both: three significant digits (18.442 was printed
    # by one where the other printed 18.4).
    report = run_zombiewatch("--mode", "sigchld", "--connections", "200", "--settle", "5")
    assert report.returncode == 0, report.stdout + report.stderr
    load = _line(report.stdout, "flood")
    _server, ready = serve("--mode", "sigchld")
    port = ready["port"]
    flood = run_zombiewatch("flood", "--port", str(port), "--connections", "200")
    assert flood.returncode == 0, flood.stdout + flood.stderr
    for line in (load, flood.stdout):
        shown = _figures(line, "ms")
        assert len(shown) >= 2, line  # latency p50 and p99 at least
        assert all(figure(float(value)) == value for value in shown), line
    growth = _figures(_line(report.stdout, "growth"), "new/s")
    assert growth, report.stdout
    assert figure(float(growth[0])) == growth[0]


@pytest.mark.parametrize(
    ("mode", "observe"),
    [("sigchld", "auto"), ("sigchld", "sample"), ("none", "auto")],
)
def test_the_json_of_a_mode_run_matches_the_schema_and_has_the_timeline(
    mode: str, observe: str
) -> None:
    settle = "5" if modes.get(mode).expected == "pass" else "0.5"
    proc = run_zombiewatch(
        "--mode", mode, "--observe", observe, "--connections", "100", "--settle", settle, "--json"
    )
    data = valid_report(proc.stdout)
    assert data["schema_version"] == 1
    assert data["zombiewatch_version"] == zombiewatch.__version__
    assert data["zombiewatch_version"] == importlib.metadata.version("zombiewatch")
    [run] = data["runs"]
    assert run["kind"] == "mode"
    _assert_timeline(run)
    assert run["listen_queue"]["scope"] == "host"


def _assert_timeline(run: dict[str, Any]) -> None:
    """The timeline is every sample of a short run, in order, and agrees
    with the figures it summarises."""
    timeline = run["timeline"]
    assert timeline["every"] == 1  # a short run: nothing thinned
    assert len(timeline["t_s"]) == len(timeline["live"]) == len(timeline["zombies"])
    assert len(timeline["t_s"]) == run["samples"]
    assert timeline["t_s"] == sorted(timeline["t_s"])
    assert min(timeline["t_s"][0], timeline["load_start_s"]) == 0
    assert timeline["load_start_s"] <= timeline["load_end_s"] <= timeline["end_s"]
    assert timeline["end_s"] == timeline["t_s"][-1]  # the final sample
    assert max(timeline["live"]) == run["max_live_children"]
    if run["observe"]["method"] == "sample":
        assert max(timeline["zombies"]) == run["peak_zombies"]
    else:  # events count zombies at each exit and reap, between the points too
        assert max(timeline["zombies"]) <= run["peak_zombies"]


def test_the_json_of_every_mode_matches_the_schema() -> None:
    proc = run_zombiewatch("--mode", "all", "--connections", "30", "--settle", "1", "--json")
    data = valid_report(proc.stdout)
    assert {run["mode"] for run in data["runs"]} | set(data["skipped"]) == set(modes.names())


def _terminal(columns: int) -> tuple[int, int]:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return primary, secondary


def test_the_all_modes_table_fits_an_80_column_terminal() -> None:
    primary, secondary = _terminal(80)
    # COLUMNS would win over the terminal's own size (shutil.get_terminal_size).
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        proc = subprocess.Popen(
            [PYTHON, "-m", "zombiewatch", "--mode", "all", "--check",
             "--connections", "30", "--settle", "1"],
            stdin=subprocess.DEVNULL, stdout=secondary, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        os.close(secondary)
        screen = read_terminal(primary, timeout=300).decode()
        proc.wait(timeout=60)
    finally:
        os.close(primary)
    lines = screen.replace("\r\n", "\n").rstrip("\n").split("\n")
    assert lines[0].split()[:3] == ["mode", "expected", "verdict"], screen
    assert all(len(line) <= 80 for line in lines), screen
    rows = {line.split()[0] for line in lines[1:] if line.split()[0] in modes.names()}
    assert rows == {name for name in modes.names() if modes.get(name).available()}
    note = " ".join(line for line in lines if line.startswith("(") or line.endswith(")"))
    assert note.startswith("(not shown in 80 columns: live max"), screen


def test_the_all_modes_table_keeps_every_column_when_piped() -> None:
    # Not a terminal (a CI log, a pipe): no width to fit, as scan does.
    piped = run_zombiewatch("--mode", "all", "--check", "--connections", "30", "--settle", "1")
    header = piped.stdout.splitlines()[0]
    assert header.endswith("lifetime p50/p99/max ms"), piped.stdout
    assert "escaped" in header
    assert "live max" in header
    assert "(not shown" not in piped.stdout


# -- run -- CMD ----------------------------------------------------------------------


def test_run_shows_a_command_line_a_shell_gives_back() -> None:
    argv = [PYTHON, "-c", LEAKER.replace("sys.stdin.read()", "import time; time.sleep(1)"), "3",
            *ODD_ARGS]  # fmt: skip
    proc = run_zombiewatch("run", "--settle", "0.3", "--", *argv)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    target = _line(proc.stdout, "target")[len("target     ") :]
    assert target == shell_join(argv)
    # The line as the user would paste it: bash splits it back into argv.
    echoed = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {target}"], capture_output=True, timeout=30, check=True
    )
    assert echoed.stdout.decode().split("\0")[:-1] == argv
    # No load drove any connection: the host's listen queues say nothing about it.
    assert "listen     " not in proc.stdout
    assert "when the target stopped" in _line(proc.stdout, "children")


def test_the_json_of_run_matches_the_schema() -> None:
    argv = [PYTHON, "-c", LEAKER.replace("sys.stdin.read()", "import time; time.sleep(1)"), "3"]
    proc = run_zombiewatch("run", "--settle", "0.3", "--json", "--", *argv, *ODD_ARGS)
    data = valid_report(proc.stdout)
    [run] = data["runs"]
    assert run["kind"] == "run"
    assert run["mode"] == shell_join([*argv, *ODD_ARGS])
    assert run["leaked"] == 3
    _assert_timeline(run)


def test_run_names_the_built_in_server_and_counts_listen_queues_under_a_load() -> None:
    port = str(free_port())
    flood_sh = Path(zombiewatch.__file__).parent / "scripts" / "flood.sh"
    proc = run_zombiewatch(
        "run", "--wait-port", port, "--load", f"{flood_sh} 127.0.0.1 {port} 20 5", "--settle", "2",
        "--", PYTHON, "-m", "zombiewatch", "serve", "--mode", "none", "--port", port,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    parent = _line(proc.stdout, "parent")
    assert " zombiewatch server, mode none: 20 zombie(s) seen" in parent, parent
    [line] = _leak_lines(proc.stdout)
    assert line.startswith(f"leaked     20 zombies ({COMM}) of parent "), line
    assert " zombiewatch server, mode none: pids " in line
    # A load command may connect: the host-wide counters are shown, and said to be.
    assert "(host-wide counters, every listener)" in _line(proc.stdout, "listen")


# -- watch PID -------------------------------------------------------------------------


@pytest.fixture
def leaker(spawn):
    """A running process holding five zombies, stopped by the test's end."""
    proc = spawn(
        [PYTHON, "-c", WATCHED, "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "ready\n"
    call_until(lambda: len(zombie_children(proc.pid)) == 5, what="5 zombies")
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_watch_reports_no_stop_and_no_listen_queues(leaker) -> None:
    proc = run_zombiewatch("watch", str(leaker.pid), "--duration", "0.3", "--settle", "0.1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout
    assert "when the target stopped" not in text  # watch stops nothing
    assert _line(text, "children").endswith("orphans escaped 0 while watched")
    assert "listen     " not in text  # no load: nothing of ours in the host's counters
    [line] = _leak_lines(text)
    assert line.startswith(f"leaked     5 zombies ({COMM}) of parent {leaker.pid} "), line
    # The parent's command line as a shell would take it, cut to fit.
    parent = _line(text, "parent")
    shown = parent.split(f"pid {leaker.pid} ", 1)[1].split(": 5 zombie(s) seen")[0]
    assert shell_join(leaker.args).startswith(shown.removesuffix("...")), parent
    assert shown.removesuffix("...") != PYTHON  # more than the program's path


def test_the_json_of_watch_matches_the_schema(leaker) -> None:
    proc = run_zombiewatch(
        "watch", str(leaker.pid), "--duration", "0.3", "--settle", "0.1", "--json"
    )
    data = valid_report(proc.stdout)
    [run] = data["runs"]
    assert run["kind"] == "watch"
    assert run["leaked"] == 5
    _assert_timeline(run)
