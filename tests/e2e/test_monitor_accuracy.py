"""The monitor counts exactly the zombies there are, read against psutil.

Each count is taken both ways the monitor reads a process: through kept
``/proc`` descriptors (Linux) and through psutil (elsewhere; forced here).
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.helpers import PYTHON, call_until, zombie_children
from zombiewatch import _platform
from zombiewatch.monitor import Monitor

pytestmark = pytest.mark.e2e

# Forks K children that exit at once and are not collected until stdin
# closes; then collects them all and exits, so the test leaves nothing.
PARENT = textwrap.dedent(
    """
    import os, sys
    k = int(sys.argv[1])
    for _ in range(k):
        if os.fork() == 0:
            os._exit(0)
    print("forked", flush=True)
    sys.stdin.read()
    for _ in range(k):
        os.wait()
    """
)


@pytest.fixture(params=["proc", "psutil"])
def make_monitor(request, monkeypatch) -> Iterator[Callable[..., Monitor]]:
    """Make monitors that read through kept /proc descriptors, or through psutil."""
    if request.param == "psutil":
        monkeypatch.setattr(_platform, "can_use_proc_reader", lambda: False)
    elif not _platform.can_use_proc_reader():
        pytest.skip("no /proc descriptors to keep here")
    made: list[Monitor] = []

    def make(*args: object, **kwargs: object) -> Monitor:
        monitor = Monitor(*args, **kwargs)  # type: ignore[arg-type]
        assert monitor.source.name == ("psutil" if request.param == "psutil" else "procfs")
        made.append(monitor)
        return monitor

    yield make
    for monitor in made:
        monitor.close()


@pytest.mark.parametrize("k", [1, 10, 200])
def test_exactly_k_zombies_are_reported_as_k(spawn, make_monitor, k: int) -> None:
    parent = spawn([PYTHON, "-c", PARENT, str(k)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout.readline() == "forked\n"
    call_until(lambda: len(zombie_children(parent.pid)) == k, what=f"{k} zombies")

    monitor = make_monitor(parent.pid)
    sample = monitor.sample()

    assert sample.zombies == k
    assert sample.live == 0
    assert set(monitor.zombies) == {p.pid for p in zombie_children(parent.pid)}
    assert all(z.ppid == parent.pid for z in monitor.zombies.values())
    parent.stdin.close()
    assert parent.wait(timeout=10) == 0


def test_lifetime_closes_when_the_zombie_is_collected(spawn, make_monitor) -> None:
    parent = spawn([PYTHON, "-c", PARENT, "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert parent.stdout.readline() == "forked\n"
    call_until(lambda: len(zombie_children(parent.pid)) == 3, what="3 zombies")
    monitor = make_monitor(parent.pid, interval=0.005)
    assert monitor.sample().zombies == 3
    parent.stdin.close()
    call_until(lambda: not psutil.Process(parent.pid).children(), what="children collected")
    sample = monitor.sample()

    assert sample.zombies == 0
    assert len(monitor.stats.lifetimes) == 3
    assert monitor.stats.peak_zombies == 3
    assert monitor.stats.zombies_seen == 3
    parent.wait(timeout=10)


def test_a_vanished_root_is_an_error_not_a_count() -> None:
    from zombiewatch.errors import ZombiewatchError

    proc = subprocess.Popen([PYTHON, "-c", "pass"])
    proc.wait()
    with pytest.raises(ZombiewatchError, match="does not exist"):
        Monitor(proc.pid)
