"""`zombiewatch scan`: real zombies under real parents, listed, nudged, killed.

Each zombie holder is two processes the test starts: a *nursery*, a child
subreaper that collects everything below it, and under it the *parent*,
which forks children that exit at once and then holds them as zombies. A
"reap" parent installs a SIGCHLD handler only after its children died, so
their own SIGCHLDs were lost and only a nudge makes it collect them; an
"ignore" parent has no handler. Killing a parent hands its zombies to the
nursery, which collects them, so nothing reaches PID 1 and every test
leaves nothing behind (our own pytest plugin checks that after each test).

Other tests run on this machine at the same time, some with thousands of
zombies: assertions look only at our own parents, and every command that
signals is limited to them with ``--parent``.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import (
    PYTHON,
    call_until,
    read_ready_line,
    read_terminal,
    zombie_children,
    zombiewatch,
)
from zombiewatch import _platform

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _platform.LINUX, reason="scan reads /proc, which only Linux has"),
]

HOLDER = r'''
"""Hold zombies for zombiewatch's scan tests (see tests/e2e/test_scan.py).

nursery COUNT SIGCHLD TAG [UID PYTHON]: become a child subreaper, start the
parent (as UID, run by PYTHON, when given), then collect every child (the
parent, and the zombies it leaves when it is killed) until none is left,
and exit.
parent COUNT SIGCHLD TAG: fork COUNT children that exit at once; once all
are zombies, install a SIGCHLD handler that reaps (SIGCHLD=reap) or none
(ignore); print {"pid", "children"} and pause until killed.
"""
import ctypes
import json
import os
import signal
import sys
import time

role, count, on_sigchld = sys.argv[1], int(sys.argv[2]), sys.argv[3]

if role == "nursery":
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    python = sys.executable
    pid = os.fork()
    if pid == 0:
        try:
            if len(sys.argv) > 5:
                uid, python = int(sys.argv[5]), sys.argv[6]
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.execv(python, [python, __file__, "parent", *sys.argv[2:5]])
        finally:
            os._exit(127)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            sys.exit(0)


def state(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    at = data.rindex(b")") + 2
    return data[at : at + 1]


def reap(signum, frame):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


children = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    children.append(pid)
deadline = time.monotonic() + 60
while not all(state(pid) == b"Z" for pid in children):
    if time.monotonic() > deadline:
        sys.exit("the children did not become zombies")
    time.sleep(0.001)
# Only now: the children's own SIGCHLDs were discarded (default action),
# so a "reap" parent holds them until someone nudges it.
if on_sigchld == "reap":
    signal.signal(signal.SIGCHLD, reap)
print(json.dumps({"pid": os.getpid(), "children": children}), flush=True)
while True:
    signal.pause()
'''


@dataclass
class Holder:
    """A parent holding zombies, and the nursery it runs under."""

    nursery: subprocess.Popen[str]
    pid: int
    children: list[int]
    cmdline: list[str]
    process: psutil.Process
    name: str  # psutil's name, as the scan shows it

    def alive(self) -> bool:
        try:
            return self.process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def zombies(self) -> set[int]:
        return {p.pid for p in zombie_children(self.pid)} if self.alive() else set()


@pytest.fixture
def holder() -> Iterator[Any]:
    """Start ``holder(count, on_sigchld, uid=None)``: a parent holding
    ``count`` zombies, run as ``uid`` when given (the nursery stays ours)."""
    # World-readable, unlike pytest's tmp_path: a parent run as another
    # user must read the script.
    where = Path(tempfile.mkdtemp(prefix="zombiewatch-scan-"))
    where.chmod(0o755)
    script = where / "zombie_holder.py"
    script.write_text(HOLDER)
    script.chmod(0o644)
    started: list[tuple[subprocess.Popen[str], Holder | None]] = []

    def start(count: int, on_sigchld: str = "ignore", uid: int | None = None) -> Holder:
        tag = f"tag-{len(started)}"
        as_user = [] if uid is None else [str(uid), _python_for(uid)]
        nursery = subprocess.Popen(
            [PYTHON, str(script), "nursery", str(count), on_sigchld, tag, *as_user],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append((nursery, None))
        ready = read_ready_line(nursery, timeout=60)
        pid = ready["pid"]
        python = PYTHON if uid is None else as_user[1]
        cmdline = [python, str(script), "parent", str(count), on_sigchld, tag]
        process = psutil.Process(pid)
        held = Holder(nursery, pid, ready["children"], cmdline, process, process.name())
        started[-1] = (nursery, held)
        return held

    yield start
    for nursery, held in started:
        if held is not None:
            try:
                held.process.kill()  # psutil refuses if the pid was reused
            except psutil.NoSuchProcess:
                pass  # a test killed it already
        try:
            # The nursery collects the parent and the zombies it hands over,
            # then exits because it has no child left.
            nursery.wait(timeout=20)
        except subprocess.TimeoutExpired:
            nursery.kill()
            nursery.wait(timeout=10)
        assert nursery.stdout is not None
        nursery.stdout.close()
    shutil.rmtree(where)


def _python_for(uid: int) -> str:
    """A Python that ``uid`` may run: a virtualenv under /root is out of its
    reach, the system's usually is not."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a zombie holder as another user")
    system = shutil.which("python3", path=os.defpath)
    for python in dict.fromkeys([PYTHON, getattr(sys, "_base_executable", PYTHON), system]):
        if python is None:
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "pass"], preexec_fn=lambda: _drop_to(uid), timeout=60,
                capture_output=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except PermissionError:
            continue
        if probe.returncode == 0:
            return python
    pytest.skip(f"no Python that uid {uid} may run")


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def scan_json(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = zombiewatch("scan", "--json", *args)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def group(data: dict[str, Any], pid: int) -> dict[str, Any]:
    found = [p for p in data["parents"] if p["pid"] == pid]
    assert len(found) == 1, f"parent {pid} in {[p['pid'] for p in data['parents']]}"
    return found[0]


def pids(data: dict[str, Any]) -> list[int]:
    return [p["pid"] for p in data["parents"]]


def assert_one_error_line(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("zombiewatch: ")


# -- listing ------------------------------------------------------------------


def test_groups_by_parent_with_exact_counts_and_command_lines(holder) -> None:
    before = time.monotonic()
    big, small = holder(50), holder(3)
    code, data, _ = scan_json()
    assert code == 1
    assert data["exit_code"] == 1
    for held, count in ((big, 50), (small, 3)):
        g = group(data, held.pid)
        assert g["count"] == count
        assert sorted(z["pid"] for z in g["zombies"]) == sorted(held.children)
        assert g["cmdline"] == held.cmdline
        assert g["uid"] == os.getuid()
        assert g["user"] == psutil.Process(held.pid).username()
        assert g["protected"] is None  # ours, not PID 1, not an ancestor
        # An upper bound: at least as long as they have been zombies, and
        # no more than they have existed (plus a clock tick of rounding).
        assert 0 <= g["oldest_age_max_s"] <= time.monotonic() - before + 0.05
        assert g["oldest_age_max_s"] == max(z["age_max_s"] for z in g["zombies"])
    counts = [p["count"] for p in data["parents"]]
    assert counts == sorted(counts, reverse=True)
    assert pids(data).index(big.pid) < pids(data).index(small.pid)
    assert data["zombies"] >= 53
    assert data["total_zombies"] >= data["zombies"]

    text = zombiewatch("scan", "--parent", str(big.pid), "--parent", str(small.pid))
    assert text.returncode == 1, text.stderr
    assert "53 zombies held by 2 parents" in text.stdout
    assert "at most" in text.stdout.lower()
    for held, count in ((big, 50), (small, 3)):
        row = next(line for line in text.stdout.splitlines() if f" {held.pid} " in line)
        assert row.split()[:2] == [str(count), str(held.pid)]
        assert " ".join(held.cmdline[1:]) in row
    lines = text.stdout.splitlines()
    assert lines.index(next(x for x in lines if f" {big.pid} " in x)) < lines.index(
        next(x for x in lines if f" {small.pid} " in x)
    )


def test_json_can_be_filtered(holder) -> None:
    big, small = holder(50), holder(3)
    code, data, _ = scan_json("--parent", str(big.pid), "--parent", str(small.pid))
    assert code == 1
    assert data["filters"]["parent"] == [big.pid, small.pid]
    # What `jq '.parents[] | select(.count >= 10) | .pid'` does:
    assert [p["pid"] for p in data["parents"] if p["count"] >= 10] == [big.pid]
    if shutil.which("jq") is None:
        return  # the Python filter above stands in for it
    proc = zombiewatch("scan", "--json", "--parent", str(big.pid), "--parent", str(small.pid))
    jq = subprocess.run(
        ["jq", "-c", "[.parents[] | select(.count >= 10) | {pid, count}]"],
        input=proc.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(jq.stdout) == [{"pid": big.pid, "count": 50}]
    zombie_pids = subprocess.run(
        ["jq", "-r", f".parents[] | select(.pid == {small.pid}) | .zombies[].pid"],
        input=proc.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert sorted(map(int, zombie_pids.stdout.split())) == sorted(small.children)


def test_min_count_and_parent_filters(holder) -> None:
    big, small = holder(50), holder(3)
    code, data, _ = scan_json("--min-count", "10")
    assert code == 1
    assert big.pid in pids(data)
    assert small.pid not in pids(data)
    assert all(p["count"] >= 10 for p in data["parents"])

    code, data, _ = scan_json("--parent", str(small.pid))
    assert code == 1
    assert pids(data) == [small.pid]
    assert data["zombies"] == 3

    # A parent's only group is below --min-count: nothing matches, exit 0.
    code, data, _ = scan_json("--parent", str(small.pid), "--min-count", "10")
    assert code == 0
    assert data["parents"] == []
    assert data["exit_code"] == 0

    # A process that holds no zombie (the nursery collects its children).
    text = zombiewatch("scan", "--parent", str(small.nursery.pid))
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("no zombie")


def test_user_filter(holder) -> None:
    held = holder(3)
    me = psutil.Process(held.pid).username()
    code, data, _ = scan_json("--user", me, "--parent", str(held.pid))
    assert code == 1
    assert pids(data) == [held.pid]
    code, data, _ = scan_json("--user", str(os.getuid()), "--parent", str(held.pid))
    assert code == 1
    other = "1" if os.getuid() != 1 else "2"  # a uid no test process runs as
    code, data, _ = scan_json("--user", other, "--parent", str(held.pid))
    assert code == 0
    assert data["parents"] == []
    text = zombiewatch("scan", "--user", other, "--parent", str(held.pid))
    assert text.returncode == 0
    assert f"no zombie matches --user {other} --parent {held.pid}" in text.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--user", "no-such-user-zw"],
        ["--min-count", "-1"],
        ["--min-count", "0"],
        ["--parent", "-5"],
        ["--parent", "4194305"],  # above any pid_max: no such process
        ["--wait", "-1"],
        ["--kill-parents", "--yes", "--signal", "NOPE"],
        ["--signal", "KILL"],  # --signal without --kill-parents
    ],
)
def test_bad_input_is_a_one_line_usage_error(args: list[str]) -> None:
    assert_one_error_line(zombiewatch("scan", *args))


# -- signalling ---------------------------------------------------------------


def test_reap_collects_from_a_reaping_parent_and_reports_one_that_ignores(holder) -> None:
    reaper, ignorer = holder(5, "reap"), holder(3, "ignore")
    assert reaper.zombies() == set(reaper.children)
    code, data, _ = scan_json(
        "--reap", "--wait", "3", "--parent", str(reaper.pid), "--parent", str(ignorer.pid)
    )
    assert code == 1  # the ignorer's zombies remain
    reap = {o["pid"]: o for o in data["reap"]["parents"]}
    assert data["reap"]["signal"] == "SIGCHLD"
    assert reap[reaper.pid]["signalled"] is True
    assert reap[reaper.pid]["outcome"] == "collected"
    assert sorted(reap[reaper.pid]["collected"]) == sorted(reaper.children)
    assert reap[ignorer.pid]["signalled"] is True
    assert reap[ignorer.pid]["outcome"] == "ignored"
    assert sorted(reap[ignorer.pid]["remaining"]) == sorted(ignorer.children)
    assert reap[ignorer.pid]["held_by"] == [ignorer.pid]
    assert data["remaining"] == 3
    # Nothing was killed: both parents run; only the nudged one collected.
    assert reaper.alive()
    assert ignorer.alive()
    assert reaper.zombies() == set()
    assert ignorer.zombies() == set(ignorer.children)

    text = zombiewatch("scan", "--reap", "--wait", "0.2", "--parent", str(ignorer.pid))
    assert text.returncode == 1, text.stderr
    assert f"{ignorer.pid} {ignorer.name}: ignored it; 3 zombies remain" in text.stdout


def test_reap_exits_0_when_every_zombie_was_collected(holder) -> None:
    reaper = holder(4, "reap")
    text = zombiewatch("scan", "--reap", "--wait", "5", "--parent", str(reaper.pid))
    assert text.returncode == 0, text.stdout + text.stderr
    assert "collected all 4 zombies" in text.stdout
    assert "4 of 4 zombies collected; 0 remain." in text.stdout
    assert reaper.alive()


def test_kill_parents_yes_kills_only_the_chosen_parent(holder) -> None:
    chosen, bystander = holder(3, "ignore"), holder(2, "ignore")
    proc = zombiewatch(
        "scan", "--kill-parents", "--yes", "--wait", "5", "--parent", str(chosen.pid)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SIGTERM -> {chosen.pid} " in proc.stdout  # the plan, listed first
    assert proc.stdout.index("the plan") < proc.stdout.index("Sent SIGTERM")
    assert f"{chosen.pid} {chosen.name}: exited;" in proc.stdout
    assert not chosen.alive()
    # Its zombies went to the nursery (a subreaper), which collected them.
    call_until(
        lambda: not any(psutil.pid_exists(pid) for pid in chosen.children),
        30,
        "the nursery to collect the zombies",
    )
    assert bystander.alive()
    assert bystander.zombies() == set(bystander.children)


def test_kill_parents_json_reports_the_kill(holder) -> None:
    chosen = holder(2, "ignore")
    code, data, stderr = scan_json(
        "--kill-parents", "--yes", "--signal", "KILL", "--wait", "5", "--parent", str(chosen.pid)
    )
    assert code == 0, stderr
    assert "the plan" in stderr  # with --json, people's text goes to stderr
    kill = data["kill"]
    assert kill["signal"] == "SIGKILL"
    assert kill["confirmed"] is True
    [outcome] = kill["parents"]
    assert outcome["pid"] == chosen.pid
    assert outcome["signalled"] is True
    assert outcome["parent_exited"] is True
    assert sorted(outcome["collected"]) == sorted(chosen.children)
    assert data["remaining"] == 0
    assert data["exit_code"] == 0
    assert not chosen.alive()


def test_kill_parents_without_yes_or_tty_refuses_and_signals_nothing(holder) -> None:
    # A "reap" parent: had even the SIGCHLD nudge been sent, it would have
    # collected its zombies.
    held = holder(3, "reap")
    proc = zombiewatch("scan", "--kill-parents", "--parent", str(held.pid))
    assert_one_error_line(proc)
    assert "--yes" in proc.stderr
    assert held.alive()
    assert held.zombies() == set(held.children)


def test_an_ancestor_of_the_scan_is_never_signalled() -> None:
    # This test process holds a zombie; the CLI runs as its child, so the
    # zombie's parent is the scan's own parent.
    child = subprocess.Popen(["true"])
    try:
        call_until(
            lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 30, "a zombie"
        )
        code, data, _ = scan_json("--reap", "--wait", "0.1", "--parent", str(os.getpid()))
        assert code == 1
        [outcome] = data["reap"]["parents"]
        assert outcome["signalled"] is False
        assert "ancestor" in outcome["why_not"]
        assert group(data, os.getpid())["protected"] == outcome["why_not"]
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        child.wait(timeout=10)


def _setpriv_nobody() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, PYTHON, "-c", "import zombiewatch.cli"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot run this Python or import zombiewatch: {probe.stderr}")
    return prefix


def test_other_users_zombies_are_listed_but_not_signalled(holder) -> None:
    prefix = _setpriv_nobody()
    held = holder(3, "reap")  # would collect them at once if it got SIGCHLD
    owner = psutil.Process(held.pid).username()

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, PYTHON, "-m", "zombiewatch", "scan", *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    proc = as_nobody("--json", "--reap", "--wait", "0.5", "--parent", str(held.pid))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    g = group(data, held.pid)
    assert g["count"] == 3
    assert g["user"] == owner
    assert g["protected"] is not None
    assert "not by you" in g["protected"]
    [outcome] = data["reap"]["parents"]
    assert outcome["signalled"] is False
    assert outcome["why_not"] == g["protected"]
    assert held.zombies() == set(held.children)

    text = as_nobody("--kill-parents", "--yes", "--parent", str(held.pid))
    assert text.returncode == 1, text.stderr
    assert f"owned by {owner}, not by you" in text.stdout
    assert "nothing to signal" in text.stdout
    assert held.alive()
    assert held.zombies() == set(held.children)

    # A plain scan (no signals) lists them and says what --reap would skip.
    text = as_nobody("--parent", str(held.pid))
    assert text.returncode == 1
    assert "--reap would not signal" in text.stdout


# -- root and other users' processes ----------------------------------------------

NOBODY = 65534


def test_root_spares_other_users_processes_without_all_users(holder) -> None:
    # A "reap" parent: a SIGCHLD alone would make it collect its zombies,
    # so zombies still held prove that not even the nudge reached it.
    held = holder(3, "reap", uid=NOBODY)
    assert psutil.Process(held.pid).uids().real == NOBODY
    for args in (["--kill-parents", "--yes"], ["--reap"]):
        proc = zombiewatch("scan", *args, "--wait", "0.5", "--parent", str(held.pid))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "owned by nobody, not by you (root); --all-users to signal it" in proc.stdout
        assert held.alive()
        assert held.zombies() == set(held.children)
    assert (
        "nothing to signal"
        in zombiewatch("scan", "--kill-parents", "--yes", "--parent", str(held.pid)).stdout
    )
    # A plain scan lists it, and says --reap would spare it and why.
    text = zombiewatch("scan", "--parent", str(held.pid))
    assert "--reap would not signal" in text.stdout
    assert "--all-users to signal it" in text.stdout


def test_root_with_all_users_signals_other_users_processes(holder) -> None:
    ignorer = holder(2, "ignore", uid=NOBODY)
    code, data, stderr = scan_json(
        "--kill-parents", "--yes", "--all-users", "--wait", "5", "--parent", str(ignorer.pid)
    )
    assert code == 0, stderr
    [nudged] = data["reap"]["parents"]
    assert nudged["signalled"] is True  # SIGCHLD first, which it ignores
    assert nudged["outcome"] == "ignored"
    [killed] = data["kill"]["parents"]
    assert killed["signalled"] is True
    assert killed["parent_exited"] is True
    assert not ignorer.alive()
    call_until(
        lambda: not any(psutil.pid_exists(pid) for pid in ignorer.children),
        30,
        "the nursery to collect the zombies",
    )


def test_kill_parents_asks_before_the_nudge_and_no_sends_nothing(holder) -> None:
    # Another user's "reap" parent, with --all-users: had the nudge gone out
    # before the question, it would already have collected its zombies.
    held = holder(3, "reap", uid=NOBODY)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [PYTHON, "-m", "zombiewatch", "scan", "--kill-parents", "--all-users",
             "--wait", "0.5", "--parent", str(held.pid)],
            stdin=secondary, stdout=secondary, stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        screen = _read_until(primary, b"process(es)? [y/N]: ")
        assert f"SIGCHLD, then SIGTERM -> {held.pid} ".encode() in screen
        assert b"Sent SIGCHLD" not in screen
        assert held.zombies() == set(held.children)  # no nudge yet
        os.write(primary, b"n\n")
        screen += read_terminal(primary)
        assert proc.wait(timeout=60) == 1
    finally:
        os.close(primary)
    assert b"you said no" in screen
    assert held.alive()
    assert held.zombies() == set(held.children)


def _read_until(primary: int, marker: bytes, timeout: float = 60.0) -> bytes:
    """Read a terminal until ``marker`` has been written to it."""
    screen = b""
    deadline = time.monotonic() + timeout
    while marker not in screen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout} s: {screen!r}"
        if select.select([primary], [], [], left)[0]:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the other side closed
                chunk = b""
            assert chunk, f"the terminal closed before {marker!r}: {screen!r}"
            screen += chunk
    return screen
