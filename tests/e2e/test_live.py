"""--live in a real terminal: tmux runs zombiewatch in a pane of a fixed
size, and ``capture-pane`` reads the screen while it runs and after (#20).

tmux is a terminal emulator: what it shows is what a person would see,
wrapped lines, alternate screen and all. ``#{alternate_on}`` says whether
the pane is on its alternate screen.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.e2e.test_run_watch import free_port
from tests.helpers import PYTHON, call_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

WIDTH, HEIGHT = 60, 20
BEFORE = "typed before the run"  # on the normal screen, which must come back
DONE = "zombiewatch exited with "


class Tmux:
    """A tmux server of our own (a private socket), with one pane.

    The server runs in the foreground (``-D``, tmux 3.2+) as our child, so
    it is ours to wait for: as a daemon it would be an orphan of the test.
    """

    def __init__(self) -> None:
        self.socket = f"zombiewatch-test-{os.getpid()}-{time.monotonic_ns()}"
        self.server = subprocess.Popen(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "-D"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        call_until(self._listening, what="the tmux server's socket")
        # A pane whose shell ended stays: the shell is waited for (dead)
        # before the server stops, or it would be the server's orphan.
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def _listening(self) -> bool:
        if self.server.poll() is not None:
            pytest.skip(f"this tmux cannot run a server in the foreground (-D): {self.server}")
        probe = ["tmux", "-L", self.socket, "-f", "/dev/null", "list-sessions"]
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip

    def start(self, *args: str) -> None:
        """Run ``zombiewatch ARGS`` in a WIDTH x HEIGHT pane; the pane stays
        open after it ends, showing its exit status."""
        command = shlex.join([PYTHON, "-m", "zombiewatch", *args])
        # The shell outlives a Ctrl-C to say the status: a handler of its
        # own, which exec resets for zombiewatch (an ignored SIGINT would
        # be inherited).
        script = f'trap : INT; echo {shlex.quote(BEFORE)}; {command}; echo "{DONE}$?"; read line'
        self.tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "sh", "-c", script)

    def screen(self, history: bool = False) -> list[str]:
        """The pane's visible rows, as a person sees them (``history``:
        with the lines scrolled off above them, wrapped lines joined)."""
        start = ["-S", "-", "-J"] if history else []
        return self.tmux("capture-pane", "-p", *start).rstrip("\n").split("\n")

    def alternate(self) -> bool:
        return self.tmux("display-message", "-p", "#{alternate_on}").strip() == "1"

    def cursor_shown(self) -> bool:
        return self.tmux("display-message", "-p", "#{cursor_flag}").strip() == "1"

    def wait_for(self, text: str, timeout: float = 60.0) -> list[str]:
        """Poll the screen until a line holds ``text``; return that screen."""
        return call_until(
            lambda: (lambda lines: lines if any(text in x for x in lines) else None)(self.screen()),
            timeout, what=f"{text!r} on the screen",
        )  # fmt: skip

    def exit_status(self, timeout: float = 120.0) -> int:
        """Wait for zombiewatch to end; its shell then waits for a line."""
        lines = self.wait_for(DONE, timeout)
        return int(next(x for x in lines if x.startswith(DONE)).removeprefix(DONE))

    def close(self, timeout: float = 60.0) -> None:
        """End zombiewatch (Ctrl-C) if it still runs, then its shell (a
        line for its ``read``), and wait until the pane's shell exited."""
        if not self.dead():
            if not any(x.startswith(DONE) for x in self.screen()):
                self.tmux("send-keys", "C-c")
                self.exit_status(timeout)
            shell = int(self.tmux("display-message", "-p", "#{pane_pid}"))
            self.tmux("send-keys", "Enter")
            call_until(self.dead, timeout, what="the pane's shell to exit")
            # Dead to tmux once its terminal closed; collected a moment later.
            call_until(lambda: not psutil.pid_exists(shell), timeout, what="tmux to reap it")

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux()
    try:
        yield server
    finally:
        # Ctrl-C first: zombiewatch stops what it started, then the
        # server (and the pane's shell and cat) go.
        try:
            server.close()
        except (subprocess.SubprocessError, AssertionError):
            pass
        server.kill()


def test_live_shows_the_title_phase_and_connections_then_gives_the_screen_back(tmux) -> None:
    # mode none leaks: the settle window runs to its end, long enough to see.
    tmux.start("--mode", "none", "--connections", "100", "--settle", "8", "--live")
    screen = tmux.wait_for("phase          settle")
    assert tmux.alternate()
    assert not tmux.cursor_shown()
    assert screen[0] == "zombiewatch server, mode none"  # not its command line and JSON
    assert "connections    100 of 100 done" in screen
    assert BEFORE not in screen  # the normal screen is apart
    assert all(len(line) <= WIDTH for line in screen)

    assert tmux.exit_status() == 1
    assert not tmux.alternate()
    assert tmux.cursor_shown()
    screen = tmux.screen(history=True)
    # The normal screen as it was, the report after it: nothing cleared,
    # and nothing of the live screens left in the scrollback.
    assert screen[0] == BEFORE
    assert any(line.startswith("verdict    FAIL") for line in screen), screen
    assert not any(line.startswith(("phase ", "zombiewatch server, mode")) for line in screen)


def test_live_during_the_load_and_a_title_cut_to_the_width(tmux) -> None:
    name = "a-job-named-at-length-" * 5
    tmux.start(
        "run", "--load", "sleep 6", "--settle", "0.2", "--live", "--name", name,
        "--", PYTHON, "-c", "import time; time.sleep(60)",
    )  # fmt: skip
    screen = tmux.wait_for("phase          load")
    assert screen[0].startswith(name[: WIDTH - 3])
    assert screen[0].endswith("...")
    assert len(screen[0]) == WIDTH  # cut, not wrapped onto the next line
    assert screen[1] == "phase          load"
    assert not any(line.startswith("connections") for line in screen)  # not a flood
    assert tmux.exit_status() == 0
    assert not tmux.alternate()


def test_ctrl_c_gives_the_terminal_back(tmux) -> None:
    tmux.start("run", "--live", "--", PYTHON, "-c", "import time; time.sleep(120)")
    screen = tmux.wait_for("phase          watch")
    assert screen[0].startswith(f"{os.path.basename(PYTHON)} -c, pid ")
    tmux.tmux("send-keys", "C-c")
    assert tmux.exit_status() == 130
    assert not tmux.alternate()
    assert tmux.cursor_shown()
    assert tmux.screen(history=True)[0] == BEFORE


def test_an_error_gives_the_terminal_back(tmux) -> None:
    # A program that never listens: the run cannot measure (exit 3).
    port = str(free_port())
    tmux.start("run", "--live", "--flood", port, "--ready-timeout", "1", "--", "sleep", "30")
    assert tmux.exit_status() == 3
    assert not tmux.alternate()
    assert tmux.cursor_shown()
    screen = tmux.screen(history=True)
    assert screen[0] == BEFORE
    # The error, on the normal screen, where it stays to be read.
    error = f"zombiewatch: the command did not listen on 127.0.0.1:{port} within 1 s"
    assert any(line.startswith(error) for line in screen), screen
