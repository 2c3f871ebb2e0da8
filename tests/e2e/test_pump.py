"""The event monitor's two feeds (zombiewatch/_feeds.py) against real
processes: the records each gives for a child's life, that a watch ends
with its reap and leaves no descriptor behind, and (the native one) that a
process which forks while its thread runs can still use and close it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.helpers import PYTHON, call_until
from zombiewatch import _cnproc, _feeds, observe
from zombiewatch.events import EventMonitor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        observe.events_unavailable_reason() is not None, reason="no kernel events here"
    ),
]

ME = os.getpid()


@pytest.fixture
def native(monkeypatch) -> None:
    monkeypatch.delenv("ZOMBIEWATCH_NATIVE", raising=False)
    if _feeds.native_reason() is not None:
        pytest.skip(f"no native feed: {_feeds.native_reason()}")


def isolated(script: str, **env: str) -> str:
    """Run ``script`` in a fresh interpreter and return its output: its
    descriptor counts are its own, where this test process's would count
    the pidfds that the plugin's reader opens and closes on its own
    thread."""
    proc = subprocess.run(
        [PYTHON, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def records_of(feed: _feeds.Feed, pid: int, until: int) -> list[tuple[int, ...]]:
    """The feed's records about ``pid`` until one of kind ``until`` came."""
    got: list[tuple[int, ...]] = []

    def arrived() -> bool:
        for record in feed.take(0.05):
            what, _ts, a, _b, c, *_ = record
            if (c if what == _cnproc.FORK else a) == pid:
                got.append(record)
        return any(r[0] == until for r in got)

    call_until(arrived, what=f"record {until:#x} of pid {pid}")
    return got


def test_a_childs_life_is_a_fork_an_exit_and_a_hup_in_that_order(feed) -> None:
    conn = _cnproc.Connector()
    chosen = _feeds.open_feed(conn, ME)
    try:
        assert chosen.native == (feed == "native")
        child = subprocess.Popen(["true"])
        got = records_of(chosen, child.pid, _cnproc.FORK)
        assert got[0][0] == _cnproc.FORK  # nothing of the child's before its fork
        watch = got[0][6] if chosen.native else chosen.watch(child.pid)
        assert watch > 0  # a pidfd, opened before anyone reaped the child
        call_until(lambda: zombie(child.pid), what="the child to exit")
        held = 0.05
        time.sleep(held)  # a zombie for at least this long: the lifetime's floor
        child.wait()
        rest = got[1:] + records_of(chosen, child.pid, _feeds.HUP)
        [exit_] = [r for r in rest if r[0] == _cnproc.EXIT]
        [hup] = [r for r in rest if r[0] == _feeds.HUP]
        assert rest.index(exit_) < rest.index(hup)
        assert hup[2:4] == (child.pid, watch)
        assert hup[1] - exit_[1] >= held * 1e9  # kernel exit time to the reap's wake-up
        assert chosen.fd(child.pid, watch) == -1  # the watch ended with its HUP
    finally:
        chosen.close()
        conn.close()


NO_DESCRIPTOR_LEFT = """
import os, subprocess, time
from zombiewatch.events import EventMonitor

def fds():
    return len(os.listdir("/proc/self/fd"))

before = fds()
monitor = EventMonitor(os.getpid())
for _ in range(3):
    children = [subprocess.Popen(["true"]) for _ in range(50)]
    for child in children:
        child.wait()
deadline = time.monotonic() + 60
while True:
    monitor.sample()
    stats = monitor.stats
    if stats.lifetimes_closed + stats.unwatched == 150 and not monitor.zombies:
        break
    assert time.monotonic() < deadline, stats
    time.sleep(0.01)
assert stats.zombies_seen == 150, stats
monitor.close()
assert fds() == before, (fds(), before)
print(stats.reader)
"""


def test_watches_leave_no_descriptor_behind(feed) -> None:
    native = "1" if feed == "native" else "0"
    assert isolated(NO_DESCRIPTOR_LEFT, ZOMBIEWATCH_NATIVE=native) == feed


# watch() of a pid whose watch is of a process collected already: that
# watch is set aside (the pid may be another process's now) and still
# reports its HUP, then closes. No thread: the pump sees the HUP only when
# taken from, after the second watch.
RETIRED_WATCH = """
import os, socket, subprocess
from zombiewatch import _feeds, _pump

def fds():
    return len(os.listdir("/proc/self/fd"))

before = fds()
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
pump = _pump.Pump(a.fileno(), os.getpid(), thread=False)
child = subprocess.Popen(["true"])
first = pump.watch(child.pid)
assert first > 0
child.wait()
assert pump.watch(child.pid) == 0  # no process has that pid now
assert pump.fd(child.pid, first) >= 0  # ...and the first watch is kept
hups = [r[2:4] for r in pump.take() if r[0] == _feeds.HUP]
assert hups == [(child.pid, first)], hups
assert pump.fd(child.pid, first) == -1
pump.close()
a.close()
b.close()
assert fds() == before, (fds(), before)
print("ok")
"""


@pytest.mark.usefixtures("native")
def test_a_pump_keeps_the_watch_of_a_reaped_pid_until_its_hup() -> None:
    assert isolated(RETIRED_WATCH) == "ok"


@pytest.mark.usefixtures("native")
def test_a_process_forked_while_the_pump_runs_can_use_and_close_it() -> None:
    monitor = EventMonitor(ME)
    try:
        monitor.start()
        for _ in range(20):  # forks at any point of the thread's rounds
            subprocess.Popen(["true"]).wait()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports by its status
                # The pump itself (the monitor's Python locks are another
                # matter: whatever holds them at the fork holds them here).
                status = 1
                try:
                    pump = monitor._feed
                    pump.take(0)
                    pump.watch(os.getpid())
                    pump.close()
                    status = 0
                finally:
                    os._exit(status)
            deadline = time.monotonic() + 30
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("the forked child hung on the pump")
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        monitor.stop()
        monitor.close()
