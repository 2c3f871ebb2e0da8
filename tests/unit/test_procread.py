"""Reading ``/proc/PID/stat`` and keeping descriptors: the parser, and the
reader on this very process (no forking; ``tests/e2e/test_procread.py``
has the real children)."""

from __future__ import annotations

import gc
import os
import resource
import socket
import sys
import types

import psutil
import pytest

from tests.helpers import open_fds
from zombiewatch import _platform, _procfs
from zombiewatch._procfs import ProcReader, ProcStat

needs_proc = pytest.mark.skipif(
    not _platform.can_use_proc_reader(), reason="no /proc to keep open here"
)


def parse_status_threads(data: bytes) -> tuple[str, int]:
    stat = ProcStat(4242, data)
    return stat.status, stat.num_threads


def stat_line(comm: bytes, state: bytes = b"S", threads: int = 1, pid: int = 4242) -> bytes:
    """A /proc/PID/stat line as Linux 6 writes it: 52 fields, then a newline."""
    after = [state, b"1", b"4242", b"4242", b"0", b"-1", b"4194560"]
    after += [b"0"] * 10  # minflt .. nice: fields 10-19
    after += [str(threads).encode(), b"0", b"123456"]  # num_threads, itrealvalue, starttime
    after += [b"7"] * (52 - 2 - len(after))
    return b"%d (%s) " % (pid, comm) + b" ".join(after) + b"\n"


def test_the_line_builder_writes_52_fields():
    assert len(stat_line(b"x").split()) == 52


@pytest.mark.parametrize(
    "comm",
    [
        b"python",
        b"with space",
        b"a) R 1 2 (b",  # looks like the end of comm and a state
        b")",
        b"((()))",
        b"x) Z 9 9 9 9",
        b"",
    ],
)
def test_comm_may_hold_spaces_and_parentheses(comm):
    assert parse_status_threads(stat_line(comm, b"S", 7)) == (psutil.STATUS_SLEEPING, 7)
    assert parse_status_threads(stat_line(comm, b"Z", 1)) == (psutil.STATUS_ZOMBIE, 1)


@pytest.mark.parametrize(
    ("letter", "status"),
    [
        (b"R", psutil.STATUS_RUNNING),
        (b"S", psutil.STATUS_SLEEPING),
        (b"D", psutil.STATUS_DISK_SLEEP),
        (b"T", psutil.STATUS_STOPPED),
        (b"t", psutil.STATUS_TRACING_STOP),
        (b"Z", psutil.STATUS_ZOMBIE),
        (b"X", psutil.STATUS_DEAD),
        (b"I", psutil.STATUS_IDLE),
        (b"P", psutil.STATUS_PARKED),
    ],
)
def test_states_are_psutil_statuses(letter, status):
    assert parse_status_threads(stat_line(b"w", letter)) == (status, 1)


def test_an_unknown_state_is_a_question_mark_as_in_psutil():
    assert parse_status_threads(stat_line(b"w", b"Q"))[0] == "?"


def test_the_state_table_is_psutils():
    pslinux = pytest.importorskip("psutil._pslinux")
    table = {letter.decode(): status for letter, status in _procfs._STATES.items()}
    assert table == pslinux.PROC_STATUSES


def test_thread_count_is_field_20():
    line = stat_line(b"many threads", b"R", 123)
    assert line.rsplit(b")", 1)[1].split()[17] == b"123"
    assert parse_status_threads(line) == (psutil.STATUS_RUNNING, 123)


@needs_proc
def test_the_parser_agrees_with_psutil_on_this_process():
    me = os.getpid()
    with open(f"/proc/{me}/stat", "rb") as f:
        status, threads = parse_status_threads(f.read())
    assert status == psutil.Process(me).status()
    assert threads == len(os.listdir(f"/proc/{me}/task"))


# -- the kept-descriptor limit ----------------------------------------------------


@pytest.mark.parametrize(
    ("soft", "limit"),
    [(1024, 256), (100_000, 4096), (3, 0), (resource.RLIM_INFINITY, 4096)],
    ids=["1024", "100000", "3", "unlimited"],
)
def test_kept_descriptors_stay_well_under_the_soft_rlimit(monkeypatch, soft, limit):
    fake = types.SimpleNamespace(
        RLIMIT_NOFILE=resource.RLIMIT_NOFILE,
        RLIM_INFINITY=resource.RLIM_INFINITY,
        getrlimit=lambda which: (soft, resource.RLIM_INFINITY),
    )
    monkeypatch.setitem(sys.modules, "resource", fake)  # kept_fd_limit imports it late
    assert _procfs.kept_fd_limit() == limit


def test_the_cap_is_a_module_constant(monkeypatch):
    monkeypatch.setattr(_procfs, "MAX_KEPT_FDS", 5)
    assert _procfs.kept_fd_limit() == 5


# -- the reader on this process --------------------------------------------------


@pytest.fixture
def reader():
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    r = ProcReader()
    yield r
    r.close()


def test_a_kept_descriptor_is_reread(reader):
    me = os.getpid()
    before = open_fds()
    first = reader.stat(me)
    assert first is not None
    assert first.status in {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}
    assert reader.kept == 1
    assert open_fds() == before + 1
    assert reader.stat(me) is not None
    assert open_fds() == before + 1  # the same descriptor, read again
    assert reader.pids() == [me]


def test_forget_and_close_release_descriptors(reader):
    me = os.getpid()
    before = open_fds()
    reader.stat(me)
    reader.forget(me)
    assert (reader.kept, open_fds()) == (0, before)
    reader.forget(me)  # nothing left to close
    reader.stat(me)
    reader.close()
    reader.close()
    assert (reader.kept, reader.pids(), open_fds()) == (0, [], before)
    assert reader.stat(me) is not None  # usable after close: opens afresh
    assert reader.kept == 1


def test_past_the_cap_each_read_opens_and_closes(monkeypatch):
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    monkeypatch.setattr(_procfs, "MAX_KEPT_FDS", 0)
    r = ProcReader()
    before = open_fds()
    me = os.getpid()
    assert r.stat(me) is not None
    assert r.children(me, 1) == r.children(me, 2)
    assert (r.kept, open_fds()) == (0, before)


def test_a_pid_that_cannot_exist_is_gone(reader):
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1
    assert reader.stat(beyond) is None
    assert reader.stat(beyond, renew=True) is None
    assert reader.children(beyond, 1) == []
    assert reader.children(beyond, 2) == []
    assert reader.kept == 0


def test_a_garbage_collected_reader_closes_its_descriptors():
    if not _platform.can_use_proc_reader():
        pytest.skip("no /proc to keep open here")
    before = open_fds()
    r = ProcReader()
    r.stat(os.getpid())
    assert open_fds() == before + 1
    del r
    gc.collect()
    assert open_fds() == before


@pytest.mark.parametrize("comm", [b"python3", b"a b", b"x) y (z"])
def test_ppid_and_name_come_from_the_stat_line(comm):
    line = b"4242 (" + comm + b") Z 17 4242 4242 0 -1 4227916 0 0 0 0 0 0 0 0 20 0 1 0 5\n"
    stat = ProcStat(4242, line)
    assert (stat.ppid, stat.comm) == (17, comm.decode())


def test_ppid_and_name_agree_with_psutil_on_this_process(reader):
    me = psutil.Process()
    assert reader.reread(me.pid) is None  # nothing kept for it yet
    reader.stat(me.pid)
    stat = reader.reread(me.pid)
    assert stat is not None
    assert (stat.ppid, stat.comm) == (me.ppid(), me.name()[:15])


# -- one rule for "zombie" and "kernel thread", the monitor's and scan's (#15) ---


@pytest.mark.parametrize(
    ("state", "threads", "exited", "group"),
    [(b"Z", 1, True, "zombie"), (b"Z", 2, False, "running"), (b"S", 3, False, "sleeping")],
)
def test_a_zombie_main_thread_with_live_threads_is_an_alive_group(state, threads, exited, group):
    stat = ProcStat(4242, stat_line(b"x", state, threads))
    assert stat.group_exited is exited
    assert stat.group_status == group


def test_the_sampler_reads_the_group_status():
    from zombiewatch._sampling import ProcfsSource

    class Reader:
        def stat(self, pid, renew):
            return ProcStat(pid, stat_line(b"x", b"Z", 3, pid))

    source = ProcfsSource()
    source.reader = Reader()  # type: ignore[assignment]
    assert source.stat(4242, False) == ("running", 3)


@pytest.mark.parametrize(
    ("pid", "flags", "kernel"),
    [(2, 0, False), (3, 0x00400000, False), (2, _procfs.PF_KTHREAD, True),
     (77, _procfs.PF_KTHREAD | 0x40, True)],
)  # fmt: skip
def test_a_kernel_thread_is_known_by_pf_kthread_not_by_pid(pid, flags, kernel):
    line = stat_line(b"x", pid=pid).split(b" ")
    line[8] = str(flags).encode()  # field 9: flags
    assert ProcStat(pid, b" ".join(line)).kernel_thread is kernel


@needs_proc
def test_pid_2_here_is_kthreadd_by_its_flags():
    stat = _procfs.read_stat(2)
    if stat is None or stat.comm != "kthreadd":
        pytest.skip("in a PID namespace: no kthreadd in view")
    assert stat.kernel_thread


# -- who holds a listening port ------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_ip", "text"),
    [("0100007F", "127.0.0.1"), ("00000000", "0.0.0.0"),
     ("00000000000000000000000001000000", "::1"),
     ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1")],
)  # fmt: skip
def test_proc_net_tcp_addresses_are_host_order_words(hex_ip, text):
    if sys.byteorder != "little":
        pytest.skip("the table is written for a little-endian host")
    assert _procfs._tcp_address(hex_ip) == text


@needs_proc
def test_a_listening_socket_is_found_and_its_holder_named():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        listeners = _procfs.listening_sockets(port)
        assert list(listeners.values()) == ["127.0.0.1"]
        [inode] = listeners
        assert inode in _procfs.socket_inodes(os.getpid())
        assert _procfs.socket_holders({inode}) == [os.getpid()]
    assert _procfs.listening_sockets(port) == {}
