"""The event monitor on real processes: exact lifetimes, short lives seen,
overruns reported, pid reuse, and the fall back to sampling."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from tests.helpers import PYTHON, REAP_TIMES, call_until, zombie_children, zombiewatch
from zombiewatch import _cnproc, _feeds, _record, observe
from zombiewatch.errors import ZombiewatchError
from zombiewatch.monitor import TreeWatcher

REASON = observe.events_unavailable_reason()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REASON is not None, reason=f"no kernel events here: {REASON}"),
]

# A parent that, on each line "N DELAY_MS REAP", forks N children that exit
# at once, and when REAP is 1 reaps each DELAY_MS after it became a zombie
# (seen in /proc: however late a busy machine runs the child, it is a zombie
# for at least DELAY_MS); it answers "ok PID..." with the children's pids.
# EOF: it exits without reaping more.
PARENT = r"""
import os, sys, time

def zombie(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2 :][:1] == b"Z"

for line in sys.stdin:
    n, delay, reap = line.split()
    pids = []
    for _ in range(int(n)):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
        if reap == "1":
            while not zombie(pid):
                time.sleep(0.0005)
            time.sleep(float(delay) / 1000)
            os.waitpid(pid, 0)
    print("ok", *pids, flush=True)
"""


@pytest.fixture
def parent(spawn) -> Callable[..., list[int]]:
    proc = spawn([PYTHON, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def order(n: int, delay_ms: float = 0.0, reap: bool = True) -> list[int]:
        proc.stdin.write(f"{n} {delay_ms} {int(reap)}\n")
        proc.stdin.flush()
        reply = proc.stdout.readline().split()
        assert reply[0] == "ok"
        return [int(p) for p in reply[1:]]

    order.pid = proc.pid  # type: ignore[attr-defined]
    return order


@pytest.fixture
def watchers(feed) -> Iterator[Callable[..., TreeWatcher]]:
    made: list[TreeWatcher] = []

    def make(root: int, **kwargs: object) -> TreeWatcher:
        kwargs.setdefault("observe", "events")
        w = observe.open_monitor(root, **kwargs)  # type: ignore[arg-type]
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
        w.close()


def test_lifetimes_are_exact_not_one_interval(parent, watchers) -> None:
    w = watchers(parent.pid, interval=1.0)
    assert w.stats.method == "events"
    w.start()
    parent(20, delay_ms=20)
    call_until(lambda: w.stats.zombies_seen == 20, what="20 exits")
    w.stop()
    w.sample()
    stats = w.stats
    assert stats.lifetimes_closed + stats.unwatched == 20
    # A child whose fork event the watcher handled before the reap (most of
    # them: each is a zombie for 20 ms; on a busy machine the watcher can be
    # late for some, which are then counted as unwatched) is timed exactly:
    # from the kernel's exit to the reap, so at least the 20 ms, and not
    # the 0 or the whole second a sampler at this interval would say.
    assert stats.lifetimes_closed > 0, stats
    assert all(0.020 <= life < 1.0 for life in stats.lifetimes), stats.lifetimes
    assert w.zombies == {}


def test_a_child_that_lives_a_millisecond_is_seen(parent, watchers) -> None:
    w = watchers(parent.pid, interval=1.0)  # a sampler would see none of them
    w.start()
    parent(5, delay_ms=1)
    call_until(lambda: w.stats.zombies_seen >= 5, what="5 exits")
    w.stop()
    assert w.stats.zombies_seen == 5, w.stats
    w.sample()
    assert w.zombies == {}
    assert w.stats.lifetimes_closed + w.stats.unwatched == 5


def test_zombies_left_are_held_with_their_exit_time_and_name(parent, watchers) -> None:
    w = watchers(parent.pid, interval=0.01)
    pids = parent(3, reap=False)
    call_until(lambda: w.sample().zombies == 3, what="three zombies")
    call_until(
        lambda: w.sample() and all(z.name != "?" for z in w.zombies.values()),
        what="the zombies' names",
    )
    assert set(w.zombies) == set(pids)
    assert {z.ppid for z in w.zombies.values()} == {parent.pid}
    with open(f"/proc/{parent.pid}/comm") as comm:  # a forked child keeps its parent's
        assert {z.name for z in w.zombies.values()} == {comm.read().strip()}
    assert w.stats.peak_zombies == 3
    assert w.stats.lifetimes_closed == 0


def test_the_background_thread_follows_a_burst(parent, watchers) -> None:
    w = watchers(parent.pid, interval=0.01)
    w.start()
    parent(200, delay_ms=0)
    call_until(lambda: w.stats.zombies_seen >= 200, what="200 exits")
    w.stop()
    w.sample()
    assert w.stats.zombies_seen == 200
    assert w.stats.lifetimes_closed + w.stats.unwatched == 200
    assert w.zombies == {}
    assert w.stats.events_lost == 0


def test_an_overrun_is_counted_and_the_tree_resynchronised(parent, monkeypatch, watchers) -> None:
    tiny = _cnproc.Connector.__init__

    def small_buffer(self, rcvbuf: int = 0, wanted: int = _cnproc.FORK | _cnproc.EXIT) -> None:
        tiny(self, rcvbuf=1, wanted=wanted)  # the kernel's minimum: a few events

    monkeypatch.setattr(_cnproc.Connector, "__init__", small_buffer)
    monkeypatch.setattr(_feeds.NativeFeed, "threaded", False)  # its thread would read
    w = watchers(parent.pid)
    parent(300, reap=True)  # nothing reads meanwhile
    pids = parent(2, reap=False)
    call_until(
        lambda: {p.pid for p in zombie_children(parent.pid)} == set(pids),
        what="both children to exit",
    )
    w.sample()
    assert w.stats.events_lost > 0
    # Resynchronised from /proc: the zombies left are there, whatever was lost.
    assert set(pids) <= set(w.zombies)


def test_a_reused_pid_is_a_new_process_not_the_old_zombie(spawn, watchers) -> None:
    # The parent forks A, reaps it, then makes the kernel give A's pid to B
    # before the monitor reads any event: the pidfd the monitor opens for A
    # is B's. The fork event for B proves A was collected.
    script = r"""
import os, sys
sys.stdin.readline()
a = os.fork()
if a == 0:
    os._exit(0)
os.waitpid(a, 0)
r, w = os.pipe()  # B waits for its end, not for stdin, which is ours
for _ in range(50):
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(a - 1))
    except OSError:  # needs CAP_SYS_ADMIN
        b = -1
        break
    b = os.fork()
    if b == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    if b == a:
        break
    os.kill(b, 9)
    os.waitpid(b, 0)
print(a, b, flush=True)
sys.stdin.readline()
os.close(w)
if b > 0:
    os.waitpid(b, 0)
print("reaped", flush=True)
sys.stdin.readline()
"""
    proc = spawn([PYTHON, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    w = watchers(proc.pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    a, b = (int(x) for x in proc.stdout.readline().split())
    if a != b:
        pytest.skip("could not make the kernel reuse the pid (ns_last_pid)")
    w.sample()
    assert a not in w.zombies  # A is gone, and B lives: not a zombie
    proc.stdin.write("exit b\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "reaped"
    call_until(lambda: w.sample() is not None and b not in w.zombies, what="B collected")
    w.sample()
    assert w.zombies == {}
    assert w.stats.zombies_seen >= 2  # A, B (and the children that lost the race)


def test_events_refused_is_exit_3_with_the_reason(monkeypatch, parent) -> None:
    def refused(self, *args: object, **kwargs: object) -> None:
        raise _cnproc.ConnectorError(1, "cannot listen to process events: needs root")

    monkeypatch.setattr(_cnproc.Connector, "__init__", refused)
    with pytest.raises(ZombiewatchError, match="needs root") as info:
        observe.open_monitor(parent.pid, observe="events")
    assert info.value.exit_code == 3


def test_auto_falls_back_to_sampling_and_says_so_once(monkeypatch, parent) -> None:
    def refused(self, *args: object, **kwargs: object) -> None:
        raise _cnproc.ConnectorError(1, "cannot listen to process events: needs root")

    monkeypatch.setattr(_cnproc.Connector, "__init__", refused)
    said: list[str] = []
    w = observe.open_monitor(parent.pid, interval=0.02, observe="auto", log=said.append)
    try:
        assert w.stats.method == "sample"
        assert said == ["kernel events unavailable (cannot listen to process events: needs"
                        " root); sampling every 20 ms"]  # fmt: skip
    finally:
        w.close()


def test_auto_uses_events_where_they_work(parent) -> None:
    said: list[str] = []
    w = observe.open_monitor(parent.pid, observe="auto", log=said.append)
    try:
        assert (w.stats.method, said) == ("events", [])
    finally:
        w.close()


# -- the built-in server's own record as ground truth -------------------------------


@pytest.mark.parametrize("mode", ["sigchld", "pidfd", "reaper-thread"])
def test_every_child_the_server_forked_is_seen_and_timed(mode) -> None:
    proc = zombiewatch(
        "--mode", mode, "--connections", "2000", "--observe", "events",
        "--ground-truth", "--settle", "10", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    truth = run["ground_truth"]
    assert run["observe"]["method"] == "events"
    assert truth["children"] == truth["complete"] == 2000
    assert truth["missed"] == 0, (truth, run["observe"])
    assert truth["untimed"] == 0, (truth, run["observe"])
    # Each child timed exactly or, reaped before it could be watched, with
    # its bound: never dropped.
    assert truth["exact"] + truth["unwatched"] == 2000
    assert truth["exact"] > 0
    assert run["observe"]["children_exited"] == 2000
    # Each child's fork and exit were read, and the reap of each watched one
    # (unless the kernel dropped some: a walk then found what they said).
    if run["observe"]["events_lost"] == 0:
        assert run["observe"]["events"] >= 2 * 2000 + truth["exact"], run["observe"]
    # How far the seen reap is from the server's waitpid is a speed (a few
    # microseconds at p50 on a quiet host, more on a busy one), measured in
    # docs/BENCHMARKS.md, not asserted here.
    assert truth["reap_error_us"]["p50"] is not None, truth


def _recorded_flood(serve, record, mode: str, connections: int) -> tuple[Any, Any]:
    """Serve in ``mode`` with ``--record``, flood it, and wait until the
    server has collected ``connections`` children (R lines): a child answers
    before its last line, and the server's SIGTERM could end one mid-way."""
    proc, ready = serve("--mode", mode, "--record", str(record))
    port = str(ready["port"])
    flood = zombiewatch("flood", "--port", port, "--connections", str(connections), "--json")
    assert flood.returncode == 0, flood.stderr
    call_until(
        lambda: sum("R" in t for t in _record.read(str(record)).values()) == connections,
        what=f"{connections} children collected",
    )
    return proc, ready


def test_serve_records_each_childs_fork_exit_and_reap(serve, tmp_path) -> None:
    record = tmp_path / "children.record"
    proc, _ready = _recorded_flood(serve, record, "sigchld", 20)
    proc.terminate()
    proc.wait(timeout=10)
    children = _record.read(str(record))
    assert len(children) == 20
    for times in children.values():
        assert times.keys() == {"F", "X", "Xcpu", "Xwait", "R", *REAP_TIMES}
        # Exited before it was collected. (Not after F: the server stamps F
        # once fork() has returned to it, and a child may have served and
        # ended by then.)
        assert times["X"] <= times["R"]
        assert times["Xcpu"] < times["Rcpu"]  # its teardown took CPU
        assert times["X"] < _record.zombie_from(times)


def test_a_worker_the_server_never_collects_has_its_exit_written_at_stop(serve, tmp_path):
    # double-fork: the middle child forks the worker and exits; the runner
    # here is no subreaper, so PID 1 collects the worker. The server writes
    # its X line from the shared slot when it stops.
    record = tmp_path / "children.record"
    proc, _ready = _recorded_flood(serve, record, "double-fork", 5)
    # A worker answers before its last line: wait for all 5 to have ended.
    pids = [pid for pid, t in _record.read(str(record)).items() if "R" not in t]
    assert len(pids) == 5
    call_until(lambda: not any(_running(pid) for pid in pids), what="the 5 workers ended")
    proc.terminate()
    proc.wait(timeout=10)
    workers = [t for t in _record.read(str(record)).values() if "R" not in t]
    assert len(workers) == 5, workers
    for times in workers:
        # Forked by the middle child, ended, never collected by the server.
        assert times.keys() == {"F", "X", "Xcpu", "Xwait"}


def test_a_thread_of_the_root_ending_orphans_nobody(spawn, watchers) -> None:
    # Only the root's main thread ending hands its children to an adopter.
    # Here a thread of the root ends while its child S lives; S's own
    # children exit, then S exits and is collected, and only then does the
    # monitor read its events: S's zombies went with S, out of the tree.
    script = r"""
import os, sys, threading
r, w = os.pipe()
s = os.fork()
if s == 0:
    os.close(w)
    for _ in range(3):
        if os.fork() == 0:
            os._exit(0)
    os.read(r, 1)
    os._exit(0)
os.close(r)
t = threading.Thread(target=int)
t.start()
t.join()
os.close(w)
os.waitpid(s, 0)
print(s, flush=True)
sys.stdin.readline()
"""
    proc = spawn([PYTHON, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    w = watchers(proc.pid)
    server = int(proc.stdout.readline())
    w.sample()
    assert w.zombies == {}, w.zombies  # S's zombies are init's now, not the tree's
    assert server not in w.tree()
    assert w.stats.escaped  # they were counted as escaped


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
