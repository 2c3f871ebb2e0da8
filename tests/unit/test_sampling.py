"""The monitor's backends, each on this very process (no forking): how one
process is read through kept ``/proc`` descriptors and through psutil, and
the refusal where neither can list children. ``tests/e2e`` runs both on
real trees."""

from __future__ import annotations

import os
from unittest import mock

import psutil
import pytest

from zombiewatch import _platform, _procfs, _sampling
from zombiewatch.errors import AccessDeniedError, ExitCode, UnsupportedError

S = psutil.STATUS_SLEEPING
R = psutil.STATUS_RUNNING
ME = os.getpid()


def pid_beyond_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


@pytest.fixture
def psutil_source():
    source = _sampling.PsutilSource()
    yield source
    source.close()


@pytest.fixture
def procfs_source():
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    source = _sampling.ProcfsSource()
    yield source
    source.close()


# -- psutil ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [psutil.NoSuchProcess(4242), psutil.ZombieProcess(4242)], ids=["gone", "zombie"]
)
def test_psutil_status_of_a_vanished_process_is_none(psutil_source, error):
    psutil_source._procs[4242] = mock.Mock(status=mock.Mock(side_effect=error))
    assert psutil_source.stat(4242, False) is None
    assert 4242 not in psutil_source._procs


def test_psutil_access_denied_is_an_error_not_an_undercount(psutil_source):
    denied = psutil.AccessDenied(4242)
    psutil_source._procs[4242] = mock.Mock(
        status=mock.Mock(side_effect=denied),
        children=mock.Mock(side_effect=denied),
        ppid=mock.Mock(side_effect=denied),
    )
    reads = [
        lambda: psutil_source.stat(4242, False),
        lambda: psutil_source.children(4242, 0),
        lambda: psutil_source.describe(4242),
    ]
    for read in reads:
        with pytest.raises(AccessDeniedError, match="4242") as info:
            read()
        assert info.value.exit_code == ExitCode.NOT_MEASURED
        assert info.value.__cause__ is denied


def test_psutil_reuses_the_process_object(psutil_source):
    proc = mock.Mock(status=mock.Mock(return_value=S))
    psutil_source._procs[4242] = proc
    assert psutil_source.stat(4242, False) == (S, 0)
    assert psutil_source.stat(4242, False) == (S, 0)
    assert proc.status.call_count == 2


def test_psutil_reads_a_reused_pids_new_owner_only_when_renewing(psutil_source, monkeypatch):
    stale = mock.Mock(status=mock.Mock(side_effect=psutil.NoSuchProcess(4242)))
    fresh = mock.Mock(status=mock.Mock(return_value=R))
    monkeypatch.setattr(psutil, "Process", mock.Mock(return_value=fresh))
    psutil_source._procs[4242] = stale
    assert psutil_source.stat(4242, False) is None  # a direct check: that process is gone
    psutil_source._procs[4242] = stale
    assert psutil_source.stat(4242, True) == (R, 0)  # just listed: its new owner


def test_psutil_reads_the_test_process(psutil_source):
    assert psutil_source.stat(ME, False) in {(R, 0), (S, 0)}
    assert ME in psutil_source._procs
    me = psutil.Process()
    assert psutil_source.describe(ME) == (me.ppid(), me.name())
    assert psutil_source.children(ME, 0) == [c.pid for c in me.children()]


def test_psutil_lists_children_through_psutil_not_proc(psutil_source, monkeypatch):
    # Where /proc has no children files, reading them would find no child
    # at all and call every program clean.
    monkeypatch.setattr(_procfs, "read_children", mock.Mock(side_effect=AssertionError))
    proc = mock.Mock(children=mock.Mock(return_value=[mock.Mock(pid=10), mock.Mock(pid=11)]))
    psutil_source._procs[4242] = proc
    assert psutil_source.children(4242, 0) == [10, 11]


def test_psutil_forgets_what_is_not_retained(psutil_source):
    psutil_source._procs.update({101: mock.Mock(), 200: mock.Mock()})
    psutil_source.retain({200})
    assert set(psutil_source._procs) == {200}


# -- kept /proc descriptors ------------------------------------------------------------


def test_procfs_reads_the_test_process_through_a_kept_descriptor(procfs_source, monkeypatch):
    monkeypatch.setattr(psutil, "Process", mock.Mock(side_effect=AssertionError("psutil")))
    status, threads = procfs_source.stat(ME, False) or ("", 0)
    assert status in {R, S}
    assert threads == len(os.listdir(f"/proc/{ME}/task"))
    assert procfs_source.stat(ME, False) is not None  # read again, through the same one
    assert (procfs_source.reader.pids(), procfs_source.reader.kept) == ([ME], 1)
    procfs_source.close()
    procfs_source.close()  # idempotent
    assert procfs_source.reader.kept == 0


def test_procfs_status_of_a_pid_that_cannot_exist_is_none(procfs_source):
    beyond = pid_beyond_max()
    assert procfs_source.stat(beyond, False) is None
    assert procfs_source.stat(beyond, True) is None
    assert procfs_source.describe(beyond) is None
    assert procfs_source.reader.kept == 0


def test_procfs_permission_error_is_an_error_not_an_undercount(procfs_source, monkeypatch):
    denied = PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "open", mock.Mock(side_effect=denied))
    for renew in (False, True):
        with pytest.raises(AccessDeniedError, match="4242") as info:
            procfs_source.stat(4242, renew)
        assert info.value.exit_code == ExitCode.NOT_MEASURED
        assert info.value.__cause__ is denied
    with pytest.raises(AccessDeniedError, match="4242"):
        procfs_source.children(4242, 1)


def test_procfs_describes_from_the_kept_descriptor(procfs_source, monkeypatch):
    me = psutil.Process()
    procfs_source.stat(ME, False)
    monkeypatch.setattr(_procfs, "read_stat", mock.Mock(side_effect=AssertionError("reopened")))
    assert procfs_source.describe(ME) == (me.ppid(), me.name()[:15])


def test_procfs_describes_past_the_descriptor_cap_by_reading_stat(procfs_source):
    me = psutil.Process()
    assert procfs_source.reader.kept == 0  # nothing kept for it
    assert procfs_source.describe(ME) == (me.ppid(), me.name()[:15])


def test_procfs_releases_what_is_not_retained(procfs_source):
    procfs_source.stat(ME, False)
    procfs_source.retain({ME})
    assert procfs_source.reader.pids() == [ME]
    procfs_source.retain(set())
    assert (procfs_source.reader.pids(), procfs_source.reader.kept) == ([], 0)


# -- choosing ------------------------------------------------------------------------


def test_kept_descriptors_are_chosen_where_proc_has_them():
    if not (_platform.can_use_proc_reader() and _platform.can_use_children_file()):
        pytest.skip("no /proc children files here")
    source = _sampling.open_source()
    assert isinstance(source, _sampling.ProcfsSource)
    assert _sampling.unavailable_reason() is None


def test_psutil_is_chosen_where_proc_has_no_children_files(monkeypatch):
    monkeypatch.setattr(_platform, "can_use_children_file", lambda: False)
    assert isinstance(_sampling.open_source(), _sampling.PsutilSource)


def test_nothing_to_list_children_with_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(_platform, "can_use_proc_reader", lambda: False)
    broken = mock.Mock(children=mock.Mock(side_effect=NotImplementedError("no such API")))
    monkeypatch.setattr(psutil, "Process", mock.Mock(return_value=broken))
    assert "no such API" in (_sampling.unavailable_reason() or "")
    with pytest.raises(UnsupportedError, match="cannot watch a process tree here") as info:
        _sampling.open_source()
    assert info.value.exit_code == ExitCode.USAGE
