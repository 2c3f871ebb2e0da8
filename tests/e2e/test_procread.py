"""Kept ``/proc`` descriptors on real processes: the reader and the monitor.

A *farm* parent forks live children (blocked on a pipe) and children that
exit at once (zombies, until the parent is told to collect them). Every
process it starts is collected before it exits, and the ``spawn`` fixture
collects the farm itself.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.helpers import PYTHON, call_until, open_fds, zombie_children
from zombiewatch import _platform, _procfs, _proctl
from zombiewatch._procfs import ProcReader
from zombiewatch.monitor import Monitor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not _platform.can_use_proc_reader(), reason="no /proc descriptors to keep here"
    ),
]

# farm LIVE ZOMBIES [thread]: fork LIVE children that block until the farm
# ends and ZOMBIES that exit at once (from a second thread, which stays, with
# "thread"); print "forked". Each stdin line "reap" collects the zombies;
# EOF collects everything and exits.
FARM = textwrap.dedent(
    """
    import os, sys, threading
    live, zombies = int(sys.argv[1]), int(sys.argv[2])
    threaded = sys.argv[3:] == ["thread"]
    r, w = os.pipe()
    live_pids, zombie_pids = [], []

    def fork_all():
        for i in range(live + zombies):
            pid = os.fork()
            if pid == 0:
                if i < live:
                    os.close(w)
                    os.read(r, 1)  # EOF when the farm closes w
                os._exit(0)
            (live_pids if i < live else zombie_pids).append(pid)

    if threaded:
        hold = threading.Event()

        def forker():
            fork_all()
            hold.wait()

        t = threading.Thread(target=forker)
        t.start()
        while len(live_pids) + len(zombie_pids) < live + zombies:
            os.sched_yield()
    else:
        fork_all()
    os.close(r)
    print("forked", flush=True)
    for line in sys.stdin:
        if line.strip() == "reap":
            for pid in zombie_pids:
                os.waitpid(pid, 0)
            zombie_pids = []
            print("reaped", flush=True)
    os.close(w)
    for pid in live_pids + zombie_pids:
        os.waitpid(pid, 0)
    if threaded:
        hold.set()
        t.join()
    """
)

# Blocks until its stdin closes, then exits.
WAITER = "import sys; sys.stdin.read()"

Z = psutil.STATUS_ZOMBIE


class Farm:
    def __init__(self, proc: subprocess.Popen[str], live: int, zombies: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.live = live
        self.zombies = zombies

    def zombie_pids(self) -> set[int]:
        return {p.pid for p in zombie_children(self.pid)}

    def reap(self) -> None:
        self.proc.stdin.write("reap\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "reaped\n"

    def end(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def farm(spawn) -> Iterator[Callable[..., Farm]]:
    farms: list[Farm] = []

    def start(live: int, zombies: int, *extra: str) -> Farm:
        proc = spawn(
            [PYTHON, "-c", FARM, str(live), str(zombies), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout.readline() == "forked\n"
        f = Farm(proc, live, zombies)
        call_until(lambda: len(f.zombie_pids()) == zombies, what=f"{zombies} zombies")
        farms.append(f)
        return f

    yield start
    for f in farms:
        if f.proc.poll() is None:
            f.end()


@pytest.fixture
def monitors() -> Iterator[Callable[..., Monitor]]:
    made: list[Monitor] = []

    def make(*args: object, **kwargs: object) -> Monitor:
        m = Monitor(*args, **kwargs)  # type: ignore[arg-type]
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


# -- the reader ----------------------------------------------------------------


def status_threads(stat: _procfs.ProcStat | None) -> tuple[str, int] | None:
    return None if stat is None else (stat.status, stat.num_threads)


def test_a_kept_descriptor_sees_live_then_zombie_then_gone(spawn) -> None:
    child = spawn([PYTHON, "-c", WAITER], stdin=subprocess.PIPE)
    reader = ProcReader()
    try:
        before = open_fds()
        stat = reader.stat(child.pid)
        assert stat is not None
        assert stat.status != Z
        assert stat.num_threads >= 1
        assert reader.children(child.pid, 1) == []
        kept = reader.kept
        assert kept == 2  # its stat and children files
        assert open_fds() == before + 2

        child.stdin.close()  # it exits; nobody collects it yet
        before -= 1  # that pipe was ours
        call_until(
            lambda: status_threads(reader.stat(child.pid)) == (Z, 1),
            what="the child to be a zombie",
        )
        assert reader.kept == kept  # read through the same descriptors
        assert open_fds() == before + 2

        assert child.wait(timeout=10) == 0
        assert reader.stat(child.pid) is None  # gone, not its last state
        assert reader.kept == 0
        assert open_fds() == before
        assert reader.children(child.pid, 1) == []
    finally:
        reader.close()


def test_a_collected_process_descriptor_reads_gone_even_after_reaping(spawn) -> None:
    # The descriptor still open in the reader, the process collected: the
    # read fails (ESRCH) rather than returning what was there before.
    child = spawn([PYTHON, "-c", WAITER], stdin=subprocess.PIPE)
    reader = ProcReader()
    try:
        assert reader.stat(child.pid) is not None
        [fd, _children] = reader._fds[child.pid]
        child.stdin.close()
        assert child.wait(timeout=10) == 0
        with pytest.raises(ProcessLookupError):
            os.pread(fd, 1024, 0)
        assert reader.stat(child.pid, renew=True) is None  # and nobody has the pid now
        assert reader.kept == 0
    finally:
        reader.close()


def _spawn_at(spawn, pid: int) -> subprocess.Popen[str] | None:
    """Start a waiter that gets ``pid``, through ns_last_pid, or return None."""
    for _ in range(50):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
        except OSError:
            return None  # needs CAP_SYS_ADMIN in this pid namespace
        proc = spawn([PYTHON, "-c", WAITER], stdin=subprocess.PIPE)
        if proc.pid == pid:
            return proc
        proc.stdin.close()
        proc.wait(timeout=10)
    return None  # other processes took the pid first every time


def test_a_reused_pid_is_never_read_as_the_old_process(spawn) -> None:
    old = spawn([PYTHON, "-c", WAITER], stdin=subprocess.PIPE)
    pid = old.pid
    first, second = ProcReader(), ProcReader()
    try:
        assert first.stat(pid) is not None
        assert second.stat(pid) is not None
        old.stdin.close()
        assert old.wait(timeout=10) == 0
        new = _spawn_at(spawn, pid)
        if new is None:
            pytest.skip("could not make the kernel reuse the pid (ns_last_pid)")
        # The old process's descriptor answers for the old process...
        assert first.stat(pid) is None
        # ...and a caller that just saw the pid listed reads its new owner.
        renewed = second.stat(pid, renew=True)
        assert renewed is not None
        assert renewed.status != Z
        assert second.kept == 1
        new.stdin.close()
        assert new.wait(timeout=10) == 0
    finally:
        first.close()
        second.close()


def test_a_children_list_longer_than_a_page_is_read_whole(farm) -> None:
    # 950 entries of at least 5 bytes ("1234 ") are more than one 4 KiB
    # page, and a seq_file read returns at most a page.
    f = farm(0, 950)
    with open(f"/proc/{f.pid}/task/{f.pid}/children", "rb") as file:
        listed = file.read()
    assert len(listed) > 4096
    reader = ProcReader()
    try:
        stat = reader.stat(f.pid)
        assert stat is not None
        assert stat.num_threads == 1  # one thread (its state: whatever it is doing now)
        children = reader.children(f.pid, 1)
        assert sorted(children) == sorted(int(p) for p in listed.split())
        assert reader.kept == 2  # read through the kept descriptor
        assert reader.children(f.pid, 1) == children  # and again, from offset 0
    finally:
        reader.close()


# -- the monitor -----------------------------------------------------------------


def test_zombies_are_described_as_psutil_describes_them(farm, monitors) -> None:
    f = farm(2, 5)
    m = monitors(f.pid)
    m.sample()
    assert m.source.reader.kept > 0  # described through the kept descriptors
    names = {p.pid: p.name() for p in zombie_children(f.pid)}
    assert {pid: (z.ppid, z.name) for pid, z in m.zombies.items()} == {
        pid: (f.pid, name) for pid, name in names.items()
    }


def test_monitor_descriptors_follow_the_tree_and_close_releases_them(farm, monitors) -> None:
    f = farm(5, 10)
    before = open_fds()
    m = monitors(f.pid)

    first = m.sample()

    assert (first.live, first.zombies) == (5, 10)
    assert set(m.zombies) == f.zombie_pids()
    # The farm's stat and children files, each zombie's stat file, and the
    # stat and children files of each live child.
    assert m.source.reader.kept == 2 + 10 + 2 * 5
    assert open_fds() == before + m.source.reader.kept
    assert m.sample() == m.stats.last
    assert open_fds() == before + 2 + 10 + 2 * 5  # the same descriptors, read again

    f.reap()
    call_until(lambda: not f.zombie_pids(), what="zombies collected")
    after = m.sample()
    assert (after.live, after.zombies) == (5, 0)
    assert len(m.stats.lifetimes) == 10
    assert m.source.reader.kept == 2 + 2 * 5  # the collected zombies' were closed
    assert open_fds() == before + 2 + 2 * 5

    m.close()
    assert open_fds() == before
    m.close()  # idempotent
    assert open_fds() == before

    again = m.sample()  # still usable: reads afresh
    assert (again.live, again.zombies) == (5, 0)
    m.close()
    assert open_fds() == before


def test_monitor_past_the_cap_reads_without_keeping(farm, monitors, monkeypatch) -> None:
    f = farm(10, 30)
    monkeypatch.setattr(_procfs, "MAX_KEPT_FDS", 8)
    before = open_fds()
    m = monitors(f.pid)
    assert m.source.reader.limit == 8

    first = m.sample()

    assert (first.live, first.zombies) == (10, 30)
    assert set(m.zombies) == f.zombie_pids()
    assert all(z.ppid == f.pid for z in m.zombies.values())
    assert m.source.reader.kept == 8
    assert open_fds() == before + 8
    m.sample()
    assert open_fds() == before + 8

    f.reap()
    call_until(lambda: not f.zombie_pids(), what="zombies collected")
    after = m.sample()
    assert (after.live, after.zombies) == (10, 0)
    assert len(m.stats.lifetimes) == 30
    assert m.stats.zombies_seen == 30
    m.close()
    assert open_fds() == before


def test_monitor_reads_every_thread_of_a_multithreaded_parent(farm, monitors) -> None:
    # The farm forks from a second thread, so its children are in that
    # thread's children file, not in the main thread's.
    f = farm(3, 7, "thread")
    m = monitors(f.pid)
    assert m.source.reader.stat(f.pid).num_threads == 2

    sample = m.sample()

    assert (sample.live, sample.zombies) == (3, 7)
    assert set(m.zombies) == f.zombie_pids()


def test_monitor_on_the_psutil_path_sees_the_same(farm, monitors, monkeypatch) -> None:
    f = farm(4, 6)
    kept = monitors(f.pid)
    monkeypatch.setattr(_platform, "can_use_proc_reader", lambda: False)
    plain = monitors(f.pid)
    assert plain.source.name == "psutil"

    a, b = kept.sample(), plain.sample()

    assert (a.live, a.zombies) == (b.live, b.zombies) == (4, 6)
    assert set(kept.zombies) == set(plain.zombies) == f.zombie_pids()
    assert {(z.ppid, z.name) for z in kept.zombies.values()} == {
        (z.ppid, z.name) for z in plain.zombies.values()
    }


def test_a_guard_that_finds_no_child_releases_the_shared_monitors_descriptors(
    spawn, monkeypatch
) -> None:
    from zombiewatch import _guard

    # A monitor of our own in the guards' table (the session's own guard
    # keeps using its one).
    monkeypatch.setattr(_guard, "_MONITORS", {})
    shared = _guard._monitor_of(os.getpid())
    before = open_fds()
    child = spawn([PYTHON, "-c", WAITER], stdin=subprocess.PIPE)

    def seen() -> bool:
        shared.sample()
        return child.pid in shared.last

    call_until(seen, what="the child in the tree")
    # The pipe; and, for a sampler, kept /proc files for us and the child
    # (an event monitor's are pidfds, which open_fds leaves out).
    sampler = not _guard._with_events()
    assert open_fds() > before + 1 if sampler else open_fds() == before + 1
    child.stdin.close()
    assert child.wait(timeout=10) == 0
    assert not _proctl.has_children()

    _guard.ZombieGuard(_guard.Settings(settle=0))

    assert open_fds() == before
    shared.close()


# -- several threads: a list per thread ---------------------------------------------


def test_every_threads_children_are_read_through_kept_descriptors() -> None:
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    reader = ProcReader()
    me = os.getpid()
    forked: list[subprocess.Popen[bytes]] = []
    # Popen in another thread: that thread, not the main one, is the parent.
    worker = threading.Thread(target=lambda: forked.append(subprocess.Popen(["sleep", "30"])))
    parked = threading.Event()
    idle = threading.Thread(target=parked.wait)
    worker.start()
    worker.join()
    idle.start()

    def gone(thread: threading.Thread) -> Callable[[], bool]:
        # join() returns when Python is done with the thread, before the
        # kernel has removed its task (and moved its children to another
        # thread), which on a busy machine can take a while.
        return lambda: str(thread.native_id) not in os.listdir(f"/proc/{me}/task")

    try:
        call_until(gone(worker), what="the worker thread's task to go")
        [child] = forked
        assert child.pid in reader.children(me, 0)  # now under another thread
        kept = {tid: list(fds) for tid, fds in reader._tasks[me].items()}
        assert str(idle.native_id) in kept
        assert all(len(fds) == 2 for fds in kept.values())  # a comm and a children file each
        assert reader.kept == 2 * len(kept)
        assert child.pid in reader.children(me, 0)
        # Read again: each thread seen both times through the same descriptors.
        again = reader._tasks[me]
        assert all(again[tid] == fds for tid, fds in kept.items() if tid in again)
        parked.set()
        idle.join()
        call_until(gone(idle), what="the idle thread's task to go")
        assert child.pid in reader.children(me, 0)  # 0: read as multi-threaded
        assert str(idle.native_id) not in reader._tasks[me]  # the ended thread's are closed
        assert reader.kept == 2 * len(reader._tasks[me])
        reader.forget(me)
        assert reader.kept == 0
    finally:
        parked.set()
        idle.join()
        for proc in forked:
            proc.kill()
            proc.wait()
        reader.close()
