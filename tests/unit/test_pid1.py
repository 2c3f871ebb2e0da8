"""`run --pid1` without starting anything: the unshare/setns code paths
(ctypes for Python 3.10 and 3.11, os for 3.12+), the refusal where
namespaces cannot be created, the option checks and the two checks' texts."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import types

import pytest

from zombiewatch import _containment, _namespace, _platform, pid1
from zombiewatch.cli import main
from zombiewatch.monitor import MonitorStats, Zombie
from zombiewatch.report import RunResult


class FakeLibc:
    """Records the libc calls the ctypes path makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def unshare(self, flags: int) -> None:
        self.calls.append(("unshare", flags, 0))

    def setns(self, fd: int, nstype: int) -> None:
        self.calls.append(("setns", fd, nstype))


def test_ctypes_path_where_python_has_no_os_unshare(monkeypatch):
    # Python 3.10 and 3.11: no os.unshare, so libc through ctypes.
    monkeypatch.setattr(_platform, "can_use_os_unshare", lambda: False)
    monkeypatch.delattr(os, "unshare", raising=False)
    monkeypatch.delattr(os, "setns", raising=False)
    libc = FakeLibc()
    monkeypatch.setattr(_namespace, "_Libc", lambda: libc)
    _namespace.unshare(_namespace.CLONE_NEWPID)
    _namespace.setns(7, _namespace.CLONE_NEWPID)
    assert libc.calls == [
        ("unshare", _namespace.CLONE_NEWPID, 0),
        ("setns", 7, _namespace.CLONE_NEWPID),
    ]


def test_os_path_where_python_has_it(monkeypatch):
    calls = []
    monkeypatch.setattr(_platform, "can_use_os_unshare", lambda: True)
    monkeypatch.setattr(os, "unshare", lambda flags: calls.append(("os.unshare", flags)),
                        raising=False)  # fmt: skip
    monkeypatch.setattr(os, "setns", lambda fd, nstype: calls.append(("os.setns", fd)),
                        raising=False)  # fmt: skip
    monkeypatch.setattr(_namespace, "_Libc", FakeLibc)  # must not be used
    _namespace.unshare(_namespace.CLONE_NEWPID)
    _namespace.setns(3, _namespace.CLONE_NEWPID)
    assert calls == [("os.unshare", _namespace.CLONE_NEWPID), ("os.setns", 3)]


def test_real_ctypes_bindings():
    # The real libc calls, in this process, with arguments that change
    # nothing: unshare(0) is a no-op, setns(-1) is EBADF.
    libc = _namespace._Libc()
    libc.unshare(0)
    with pytest.raises(OSError, match="setns: Bad file descriptor") as info:
        libc.setns(-1, _namespace.CLONE_NEWPID)
    assert info.value.errno == errno.EBADF


def test_no_privilege_and_no_unshare_is_one_line_and_exit_2(monkeypatch, capfd):
    # Without CAP_SYS_ADMIN and without unshare(1) for a user namespace
    # (tests/e2e/test_pid1.py runs the real cases as user nobody).
    def refused(flags: int) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_namespace, "unshare", refused)
    # The run's box forks a guard: none is needed to be refused.
    box = contextlib.nullcontext(types.SimpleNamespace(guard_pid=0))
    monkeypatch.setattr(_containment, "contain", lambda: box)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "unshare" else which(name))
    with pytest.raises(SystemExit) as info:
        main(["run", "--pid1", "--", "/bin/true"])
    err = capfd.readouterr().err
    assert info.value.code == 2, err
    assert err == (
        "zombiewatch: --pid1 cannot create a PID namespace: creating one needs root"
        " (CAP_SYS_ADMIN), which this process does not have, and unshare(1) (util-linux),"
        " which could make one in a user namespace, is not installed\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--init", "tini"], "--init needs --pid1"),
        (["--stop-timeout", "3"], "--stop-timeout needs --pid1"),
        (["--compare-init", "tini"], "--compare-init needs --pid1"),
        (["--pid1", "--init", "sh", "--compare-init", "sh"], "give --init or --compare-init"),
        (["--pid1", "--init", "no-such-init-here"], "'no-such-init-here': command not found"),
        (["--pid1", "--no-subreaper"], "--no-subreaper does not apply with --pid1"),
    ],
)
def test_option_errors(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["run", *args, "--", "true"])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert message in err, err
    assert err.count("\n") == 1, err


def _result(stats: MonitorStats, leaked: list[Zombie]) -> RunResult:
    return RunResult("cmd", None, "", {}, stats, leaked, settle=1.0, end=10.0)


def test_orphans_check_fails_with_the_advice():
    stats = MonitorStats(method="events", escaped={100: 2})
    held = [Zombie(pid=105, ppid=100, name="daemon", since=7.5, adopted=True)]
    check = pid1.orphans_check(_result(stats, held), root=100)
    assert check.verdict == "fail"
    assert check.text == (
        "2 orphan(s) reached PID 1, it collected 0; 1 still zombie(s) after 2.5 s:"
        " add an init (tini, dumb-init, `docker run --init`) or reap in CMD"
    )


def test_orphans_check_passes_when_collected():
    stats = MonitorStats(method="events", escaped={100: 1}, adopted_lifetimes=[0.002])
    check = pid1.orphans_check(_result(stats, []), root=100)
    assert check.verdict == "pass"
    assert check.text == (
        "1 orphan(s) reached PID 1, it collected 1; zombies there p50/max 2/2 ms"
        " (exact, kernel events)"
    )
    nothing = pid1.orphans_check(_result(MonitorStats(method="events"), []), root=100)
    assert (nothing.verdict, nothing.text) == (
        "pass",
        "no process was orphaned to PID 1 during the run",
    )


def test_orphans_check_sampled_claims_only_what_samples_saw():
    # A sample may never see a double fork's orphan under its first parent:
    # the texts say what is left under PID 1, and what the samples saw.
    caveat = (
        "sampled: an orphan whose parent exits between two samples looks like PID 1's own child"
    )
    held = [Zombie(pid=105, ppid=100, name="daemon", since=7.5)]
    failed = pid1.orphans_check(_result(MonitorStats(method="sample"), held), root=100)
    assert failed.verdict == "fail"
    assert failed.text == (
        f"1 zombie(s) still under PID 1 after 2.5 s (0 orphan(s) seen reaching it; {caveat}):"
        " add an init (tini, dumb-init, `docker run --init`) or reap in CMD"
    )
    nothing = pid1.orphans_check(_result(MonitorStats(method="sample"), []), root=100)
    assert (nothing.verdict, nothing.text) == (
        "pass",
        f"no zombie left under PID 1, and no orphan seen reaching it ({caveat})",
    )


def test_sigterm_check_texts():
    killed = pid1.sigterm_check(
        pid1.Stop(sigterm=True, stopped=False, seconds=10.0), "app", 10.0, -9
    )
    assert killed.verdict == "fail"
    assert killed.text == "app ignores SIGTERM as PID 1: `docker stop` will wait 10 s then kill it"
    stopped = pid1.sigterm_check(
        pid1.Stop(sigterm=True, stopped=True, seconds=0.05), "app", 10.0, 0
    )
    assert stopped.verdict == "pass"
    assert stopped.text == "app stopped 50 ms after SIGTERM as PID 1 (--stop-timeout 10 s)"
    gone = pid1.sigterm_check(pid1.Stop(sigterm=False), "app", 10.0, 3)
    assert gone.verdict == "skip"
    assert "exited by itself (status 3)" in gone.text
