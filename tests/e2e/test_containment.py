"""_containment on real processes: what it stops, what it leaves alone (#16)."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from tests.helpers import (
    CONTAINMENT,
    PYTHON,
    call_until,
    kill_sleeping,
    sleeping,
    unique_sleep,
    zombiewatch,
)
from zombiewatch import _containment

pytestmark = pytest.mark.e2e

# Runs in its own interpreter: contain() forks the guard and may move the
# process into a cgroup, which a test must not do to pytest itself.
BOX = textwrap.dedent(
    """
    import subprocess, sys
    from zombiewatch import _containment, _proctl
    from zombiewatch._backoff import poll_until
    before = subprocess.Popen(["sleep", sys.argv[1]])
    with _containment.contain() as box:
        _proctl.set_subreaper(True)
        daemon = "(setsid sleep %s &); sleep %s" % (sys.argv[2], sys.argv[2])
        during = subprocess.Popen(["sh", "-c", daemon])
        # Both sleeps: the daemon (adopted once its subshell exits) and the child.
        assert poll_until(lambda: len(set(box.members()) - {during.pid}) >= 2, 30)
        print(box.method, before.pid in box.members(), flush=True)
    during.wait()
    print(before.poll(), flush=True)
    before.kill()
    before.wait()
    """
)


@pytest.mark.parametrize("env", CONTAINMENT)
def test_the_box_stops_what_it_holds_and_leaves_earlier_children(env: dict[str, str]) -> None:
    earlier, inside = unique_sleep(), unique_sleep() + "1"
    try:
        proc = subprocess.run(
            [PYTHON, "-c", BOX, earlier, inside], capture_output=True, text=True, timeout=60,
            env={**os.environ, **env},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        method, listed, still_running = proc.stdout.split()
        assert method == ("guard" if env else method)
        assert listed == "False"  # a child from before the box is not the run's
        assert still_running == "None"  # and it was not stopped
        assert sleeping(inside) == []  # the daemon and the child were
    finally:
        kill_sleeping(earlier)
        kill_sleeping(inside)


IGNORES_TERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\ntime.sleep(60)"
)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(spawn) -> None:
    proc = spawn([PYTHON, "-c", IGNORES_TERM], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    stopped = _containment.stop_processes(lambda: [proc.pid], grace=0.2)
    assert stopped == 1
    assert proc.wait(timeout=10) == -9


def test_no_subreaper_daemon_is_stopped_through_the_group() -> None:
    if _containment._make_group is None or _containment._own_cgroup_dir() is None:
        pytest.skip("no cgroup v2 here")
    home = _containment._own_cgroup_dir()
    if home is None or not os.access(home, os.W_OK):
        pytest.skip(
            "the cgroup is not writable here: the guard alone cannot follow PID 1's orphans"
        )
    marker = unique_sleep()
    try:
        proc = zombiewatch(
            "run", "--no-subreaper", "--duration", "1", "--settle", "0.1",
            "--", "sh", "-c", f"(setsid sleep {marker} &); sleep 100",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        call_until(lambda: not sleeping(marker), timeout=5, what="the daemon stopped")
    finally:
        kill_sleeping(marker)
