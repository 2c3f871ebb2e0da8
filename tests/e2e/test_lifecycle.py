"""Nothing a run starts outlives it: daemons, a killed runner, early signals;
the target's output passed on with bounded memory; lost output is exit 3;
the control loop is not paced by --interval; watch of a zombie (#16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import (
    CONTAINMENT,
    PYTHON,
    call_until,
    kill_sleeping,
    sleeping,
    unique_sleep,
    zombie_children,
    zombiewatch,
)

pytestmark = pytest.mark.e2e


DOUBLE_FORK_DAEMON = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", sys.argv[1]])
        os._exit(0)
    os.wait()
    time.sleep(100)
    """
)


@pytest.mark.parametrize("env", CONTAINMENT)
@pytest.mark.parametrize("how", ["setsid", "double-fork"])
def test_daemons_of_the_target_do_not_outlivezombiewatch(env: dict[str, str], how: str) -> None:
    marker = unique_sleep()
    if how == "setsid":
        cmd = ["sh", "-c", f"(setsid sleep {marker} &); sleep 100"]
    else:
        cmd = [PYTHON, "-c", DOUBLE_FORK_DAEMON, marker]
    try:
        # --max-zombies is not reached; --duration ends the watch once the
        # daemon has had time to start (it is waited for below, too).
        proc = zombiewatch("run", "--duration", "1", "--settle", "0.1", "--", *cmd, env=env)
        assert proc.returncode == 0, proc.stderr
        assert sleeping(marker) == []
    finally:
        kill_sleeping(marker)


@pytest.mark.parametrize("env", CONTAINMENT)
def test_daemons_of_the_load_do_not_outlivezombiewatch(env: dict[str, str]) -> None:
    marker = unique_sleep()
    try:
        proc = zombiewatch(
            "run", "--load", f"setsid sleep {marker} & sleep 0.3", "--settle", "0.1",
            "--", "sleep", "100", env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sleeping(marker) == []
    finally:
        kill_sleeping(marker)


@pytest.mark.parametrize("env", CONTAINMENT)
def test_sigkill_of_the_runner_leaves_nothing_it_started(spawn, env: dict[str, str]) -> None:
    marker = unique_sleep()
    runner = spawn(
        [PYTHON, "-m", "zombiewatch", "run", "--duration", "60", "--",
         "sh", "-c", f"(setsid sleep {marker} &); sleep {marker}; :"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    try:
        # Both sleeps run: the daemon (its own session) and the target's child.
        call_until(lambda: len(sleeping(marker)) == 2, what="the two sleeps")
        if env:
            # Without a group the guard learns of the daemon at its next look.
            adopted = lambda: any(p.ppid() == runner.pid for p in sleeping(marker))  # noqa: E731
            call_until(adopted, what="the daemon adopted by the runner")
            time.sleep(0.3)  # not a wait for an event: three looks of the guard (GUARD_POLL)
        started = time.monotonic()
        runner.kill()
        runner.wait(timeout=10)
        call_until(lambda: not sleeping(marker), timeout=5, what="nothing left (issue: 5 s)")
        took = time.monotonic() - started
        err = runner.stderr.read()
        assert "its guard stopped" in err, err
        print(f"stopped within {took:.3f} s of SIGKILL")
    finally:
        kill_sleeping(marker)


def _sigterm_caught(pid: int) -> bool:
    """True once ``pid`` catches SIGTERM: zombiewatch's first lines have run."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["handlers-set", "guard-forked", "target-started"])
def test_a_signal_in_the_first_moments_is_a_clean_exit_130(spawn, sig, moment: str) -> None:
    marker = unique_sleep()
    runner = spawn(
        [sys.executable, "-m", "zombiewatch", "run", "--settle", "0.1", "--", "sleep", marker],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Polled as fast as it goes: each moment is caught as early as it
        # can be seen, within the first ~100 ms of the run.
        if moment == "handlers-set":
            reached = lambda: _sigterm_caught(runner.pid)  # noqa: E731
        elif moment == "guard-forked":
            reached = lambda: bool(_descendants(runner.pid))  # noqa: E731
        else:
            reached = lambda: bool(sleeping(marker))  # noqa: E731
        while not reached():
            assert runner.poll() is None, runner.stderr.read()
        runner.send_signal(sig)
        assert runner.wait(timeout=30) == 130
        err = runner.stderr.read()
        assert "Traceback" not in err, err
        assert err.rstrip().endswith("zombiewatch: interrupted"), err
        assert sleeping(marker) == []
        assert _descendants(runner.pid) == []
    finally:
        kill_sleeping(marker)


# -- the target's output -------------------------------------------------------


def test_the_target_output_is_passed_through_and_shown_when_it_failed() -> None:
    proc = zombiewatch(
        "run", "--settle", "0.1", "--", "sh", "-c", "echo IMPORTANT >&2; echo out; exit 4"
    )
    assert proc.returncode == 0, proc.stderr  # its status is reported, not a verdict
    pid = int(proc.stderr.split(" as pid ")[1].split()[0])
    assert f"sh[{pid}]: IMPORTANT\n" in proc.stderr
    assert f"sh[{pid}]: out\n" in proc.stderr
    assert f"sh[{pid}]" not in proc.stdout  # the report alone is on stdout
    assert "output     its last lines:\n           | IMPORTANT\n           | out" in proc.stdout

    as_json = zombiewatch(
        "run", "--json", "--settle", "0", "--", "sh", "-c", "echo WHY >&2; exit 9"
    )
    run = json.loads(as_json.stdout)["runs"][0]
    assert run["target_status"] == 9
    assert run["target_tail"] == ["WHY"]


def test_cmd_output_writes_to_the_named_file(tmp_path: Path) -> None:
    log = tmp_path / "cmd.log"
    log.write_text("old content\n")
    proc = zombiewatch(
        "run", "--cmd-output", str(log), "--settle", "0",
        "--", "sh", "-c", "echo IMPORTANT >&2; echo out; exit 4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "IMPORTANT\nout\n"
    assert "IMPORTANT" not in proc.stderr
    assert "| IMPORTANT" in proc.stdout  # the report still shows its last lines


def test_cmd_output_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    proc = zombiewatch("run", "--cmd-output", str(tmp_path / "no" / "such" / "dir"), "--", "true")
    assert proc.returncode == 2
    assert "--cmd-output" in proc.stderr


WRITER = (
    "import os\nline = b'x' * 99 + b'\\n'\nfor _ in range({n}):\n    os.write(2, line * 1000)\n"
)


def test_a_chatty_target_keeps_the_runner_memory_bounded(tmp_path: Path) -> None:
    # 100 MB of stderr through the runner; its peak RSS is read by the
    # wrapper that waited for it (the largest child: runner, guard, writer).
    wrapper = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        proc = subprocess.run(
            [sys.executable, "-m", "zombiewatch", "run", "--settle", "0", "--json",
             "--", sys.executable, "-c", {WRITER.format(n=1000)!r}],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        """
    )
    out = subprocess.run([PYTHON, "-c", wrapper], capture_output=True, text=True, timeout=300)
    code, max_rss_kb = map(int, out.stdout.split())
    assert code == 0, out.stderr
    assert max_rss_kb < 100 * 1024  # it held 100 MB before #16; about 40 MB now


# -- our own output lost ---------------------------------------------------------


LEAKER = "import os, time\nif os.fork() == 0:\n    os._exit(0)\ntime.sleep(30)\n"


@pytest.mark.parametrize(
    "redirect", ["2>/dev/full", ">/dev/full", ">&-", "2>&-", ">/dev/full 2>/dev/full"]
)
def test_output_that_cannot_be_written_is_exit_3_never_1(tmp_path: Path, redirect: str) -> None:
    # The target leaks a zombie: the verdict would be exit 1.
    script = tmp_path / "leak.py"
    script.write_text(LEAKER)
    args = f"-m zombiewatch run --duration 0.5 --settle 0.1 -- {PYTHON} {script}"
    out, err = tmp_path / "out", tmp_path / "err"
    if "2>" not in redirect:
        redirect += f" 2>{err}"
    if ">" not in redirect.replace("2>", ""):
        redirect += f" >{out}"
    code = subprocess.call(["sh", "-c", f"exec {PYTHON} {args} {redirect}"], timeout=120)
    assert code == 3
    if out.exists():
        assert "verdict    FAIL" in out.read_text()  # what could be written, was
    if err.exists():
        assert "could not write all output" in err.read_text()
        assert "Traceback" not in err.read_text()


# -- pacing ---------------------------------------------------------------------


def test_a_long_interval_does_not_pace_durations_and_windows() -> None:
    started = time.monotonic()
    proc = zombiewatch("watch", "1", "--duration", "0.5", "--settle", "0.1", "--interval", "60")
    took = time.monotonic() - started
    assert proc.returncode in (0, 1), proc.stderr
    assert took < 30, took  # one interval is 60 s; before #16 this took two


# -- watch of a zombie ----------------------------------------------------------


def test_watch_of_a_zombie_says_so_and_who_holds_it(spawn) -> None:
    parent = spawn(
        [PYTHON, "-c", "import os,sys\nif os.fork()==0: os._exit(0)\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    [zombie] = call_until(lambda: zombie_children(parent.pid), what="a zombie")
    proc = zombiewatch("watch", str(zombie.pid), "--json", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"zombiewatch: process {zombie.pid} (python) is a zombie already:"
        f" its parent {parent.pid} (python) has not collected it\n"
    )
    parent.stdin.close()
    parent.wait(timeout=10)


def test_a_watched_process_that_becomes_a_zombie_ends_the_watch(spawn) -> None:
    # The child sleeps until killed; its parent never collects it.
    parent = spawn(
        [PYTHON, "-c", "import os,sys,time\npid=os.fork()\n"
         "if pid==0:\n time.sleep(60); os._exit(0)\nprint(pid, flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    child = int(parent.stdout.readline().split()[0])
    watcher = spawn(
        [PYTHON, "-m", "zombiewatch", "watch", str(child), "--settle", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    call_until(lambda: psutil.Process(watcher.pid).num_threads() >= 2, what="the watch")
    os.kill(child, signal.SIGKILL)  # it exits; its parent leaves it a zombie
    _out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err  # nothing leaked in its own tree
    assert f"process {child} exited and is a zombie: its parent {parent.pid}" in err
    parent.stdin.close()
    parent.wait(timeout=10)
