"""The ground-truth record's ``wait4``, which collects a child while its
thread holds the GIL (zombiewatch/_record.py): it must answer as
``os.waitpid`` does, with the child's CPU time, on real children. Each test runs in a process forked
for it, whose only children are the test's own: ``waitpid(-1)`` in the
test process itself could collect another test's child."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable

import psutil
import pytest

from tests.helpers import REAP_TIMES, call_until
from zombiewatch import _record

wait4 = _record._reaper()


def waitpid(pid: int, options: int) -> tuple[int, int]:
    got, status, _times, _stamp = wait4(pid, options)
    return got, status


def isolated(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` in a child of its own; fail with its traceback."""

    def run() -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                test()
            except BaseException:
                os.write(w, traceback.format_exc().encode())
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            said = f.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, said

    run.__name__ = test.__name__
    return run


def spawn_sleep() -> int:
    return os.posix_spawn("/bin/sleep", ["sleep", "60"], os.environ)


def exits_with(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid


@isolated
def test_a_blocking_wait_returns_the_child_and_its_status() -> None:
    pid = exits_with(3)
    assert waitpid(-1, 0) == (pid, 3 << 8)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != os.getpid()


@isolated
def test_a_blocking_wait_for_one_pid_leaves_the_others() -> None:
    live = spawn_sleep()
    try:
        first = exits_with(0)
        second = exits_with(5)
        got, status = waitpid(second, 0)
        assert (got, os.waitstatus_to_exitcode(status)) == (second, 5)
        # The first is still a zombie for this process to collect.
        call_until(lambda: psutil.Process(first).status() == psutil.STATUS_ZOMBIE)
        assert waitpid(first, 0) == (first, 0)
    finally:
        os.kill(live, signal.SIGKILL)
        got, status = waitpid(live, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL


@isolated
def test_wnohang_answers_zero_until_the_child_has_exited() -> None:
    live = spawn_sleep()
    try:
        assert waitpid(-1, os.WNOHANG) == (0, 0)
        assert psutil.Process(live).status() != psutil.STATUS_ZOMBIE
    finally:
        os.kill(live, signal.SIGTERM)
    assert call_until(lambda: waitpid(live, os.WNOHANG)[0], what="the reap") == live


@isolated
def test_no_child_is_childprocesserror_as_with_os_waitpid() -> None:
    with pytest.raises(ChildProcessError):
        waitpid(-1, 0)
    with pytest.raises(ChildProcessError):
        waitpid(-1, os.WNOHANG)
    with pytest.raises(ChildProcessError):
        waitpid(os.getppid(), 0)  # a process, but not a child


@isolated
def test_a_signal_during_the_wait_runs_its_handler_and_the_wait_goes_on() -> None:
    handled: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    child = os.fork()
    if child == 0:
        time.sleep(0.2)
        os.kill(os.getppid(), signal.SIGUSR1)
        time.sleep(0.2)
        os._exit(4)
    got, status = waitpid(child, 0)
    assert (got, os.waitstatus_to_exitcode(status)) == (child, 4)
    assert handled == [signal.SIGUSR1]


@isolated
def test_a_thread_blocked_in_it_collects_while_another_thread_runs_python() -> None:
    # The reaper-thread mode's shape: one thread blocks in waitpid(-1, 0),
    # another keeps the GIL busy. Every child is collected, none twice.
    stop = threading.Event()
    reaped: list[int] = []

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    def reap(count: int) -> None:
        for _ in range(count):
            reaped.append(waitpid(-1, 0)[0])

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        pids = [exits_with(i % 7) for i in range(20)]
        reaper = threading.Thread(target=reap, args=(20,))
        reaper.start()
        reaper.join(timeout=60)
        assert not reaper.is_alive()
    finally:
        stop.set()
        spinner.join()
    assert sorted(reaped) == sorted(pids)


@isolated
def test_the_childs_times_come_with_its_reap() -> None:
    pid = os.fork()
    if pid == 0:
        while time.process_time() < 0.05:  # CPU time: the same on a busy machine
            pass
        os._exit(0)
    before = time.monotonic_ns()
    got, _status, times, stamp = wait4(pid, 0)
    assert before <= stamp <= time.monotonic_ns()
    assert got == pid
    assert times is not None
    on_cpu, waited = times
    assert 50_000_000 <= on_cpu < 5_000_000_000
    if wait4 is not _record._wait4:  # the extension's: from /proc/PID/schedstat
        assert waited is not None
        assert waited >= 0
    idle = wait4(exits_with(0), 0)[2]
    assert idle is not None
    assert idle[0] < 50_000_000


def test_a_collected_childs_exit_line_is_written_by_the_server(tmp_path) -> None:
    path = str(tmp_path / "record")

    @isolated
    def collect() -> None:
        recorder = _record.Recorder(path)
        recorder.wrap_waitpid()
        pid = os.fork()
        if pid == 0:
            recorder.note_exit()
            os._exit(0)
        recorder.note(b"F", pid)
        assert os.waitpid(pid, 0)[0] == pid
        times = _record.read(path)[pid]
        assert times.keys() == {"F", "X", "Xcpu", "Xwait", "R", *REAP_TIMES}
        assert times["F"] <= times["R"]
        assert times["X"] <= times["R"]
        assert times["Xcpu"] < times["Rcpu"]  # its teardown took CPU
        assert times["Xwait"] <= times.get("Rwait", times["Xwait"])
        assert times["X"] < _record.zombie_from(times)

    collect()


@isolated
def test_without_the_extension_os_wait4_gives_the_same_answers() -> None:
    fallback = _record._wait4
    live = spawn_sleep()
    got, status, times, _stamp = fallback(-1, os.WNOHANG)
    assert (got, status, times) == (0, 0, None)
    os.kill(live, signal.SIGKILL)
    got, status, times, stamp = fallback(live, 0)
    assert (got, os.waitstatus_to_exitcode(status)) == (live, -signal.SIGKILL)
    assert times is not None
    assert times[1] is None  # wait4 tells no run-queue wait
    assert stamp <= time.monotonic_ns()
    with pytest.raises(ChildProcessError):
        fallback(-1, 0)
