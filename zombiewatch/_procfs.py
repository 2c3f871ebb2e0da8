"""Every direct read of ``/proc``: one ``stat`` parser, the kept-descriptor
reader, children lists, the machine-wide zombie scan and the listen-queue
counters.

Linux only; callers check ``_platform`` first. As in psutil's
``_pslinux.py``, one parser reads ``/proc/PID/stat`` and one boundary turns
OS errors into the project's: a process that is gone is an answer (None, or
no children), never an error, and a process we may not read raises
``AccessDeniedError`` (``access_checked``). Nothing here forks, signals or
samples on import; the forking server imports this module for
``read_children``, so it stays free of ``typing`` (docs/FACTS.md, "Fork
cost").
"""

from __future__ import annotations

import functools
import os
import time

from zombiewatch.errors import AccessDeniedError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

# psutil's PROC_STATUSES (psutil/_pslinux.py), keyed by the byte itself, so a
# state read here equals psutil.Process.status() and psutil's STATUS_*
# constants. A unit test holds the two tables equal.
_STATES = {
    b"R": "running",
    b"S": "sleeping",
    b"D": "disk-sleep",
    b"T": "stopped",
    b"t": "tracing-stop",
    b"Z": "zombie",
    b"X": "dead",
    b"x": "dead",
    b"K": "wake-kill",
    b"W": "waking",
    b"I": "idle",
    b"P": "parked",
}
_RDONLY = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

# PF_KTHREAD from <linux/sched.h> (stable ABI): the per-task flag, field 9
# of /proc/PID/stat, that marks a kernel thread.
PF_KTHREAD = 0x00200000


def access_checked(read: Callable[P, R]) -> Callable[P, R]:
    """Turn a read's PermissionError into ``AccessDeniedError`` naming the pid.

    The one place where an access error becomes ours (psutil's
    ``wrap_exceptions``). The pid is the read's first argument after
    ``self``, or its first argument.
    """

    @functools.wraps(read)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except PermissionError as err:
            pid = next((a for a in args if isinstance(a, int)), "?")
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err

    return checked


class ProcStat:
    """``/proc/PID/stat``, split once, each field decoded when first asked for.

    The one parser of that file. comm (field 2) may itself hold spaces and
    parentheses (proc(5)), so the fields start after the *last* ``)``. The
    monitor re-reads every process of a tree each sample and needs only
    the state and the thread count, so nothing else is decoded unless
    asked for: a plain slotted class, not a NamedTuple, for the same reason
    this module avoids ``typing``.
    """

    __slots__ = ("_data", "_fields", "pid")

    def __init__(self, pid: int, data: bytes) -> None:
        self.pid = pid
        self._data = data
        # state (field 3) is index 0; start time (field 22) index 19; the
        # rest of the line stays unsplit.
        self._fields = data[data.rindex(b")") + 2 :].split(b" ", 20)

    @property
    def comm(self) -> str:
        """The kernel's name: at most 15 bytes, never the command line."""
        data = self._data
        return data[data.index(b"(") + 1 : data.rindex(b")")].decode("utf-8", "replace")

    @property
    def state(self) -> str:
        """One letter: R S D Z T t X I ..."""
        return self._fields[0].decode("ascii", "replace")

    @property
    def status(self) -> str:
        """The state as psutil names it (``psutil.STATUS_*``); "?" if unknown."""
        return _STATES.get(self._fields[0], "?")

    @property
    def group_exited(self) -> bool:
        """True for a zombie: the whole thread group has exited.

        State Z describes the main thread only. A process whose main thread
        exited while others run shows Z too (``ps`` prints ``Zl``) but is
        alive: its thread count (field 20) still counts those threads, and
        falls to 1 once the last one is gone (docs/FACTS.md, "A zombie
        leader with live threads"). The rule every zombie count shares:
        the monitor's walk and ``scan``.
        """
        return self._fields[0] == b"Z" and self.num_threads <= 1

    @property
    def group_status(self) -> str:
        """``status`` of the thread group: "zombie" only when ``group_exited``;
        a group whose main thread alone exited is alive ("running")."""
        if self._fields[0] == b"Z" and not self.group_exited:
            return "running"
        return self.status

    @property
    def ppid(self) -> int:
        return int(self._fields[1])

    @property
    def flags(self) -> int:
        """The PF_* task flags."""
        return int(self._fields[6])

    @property
    def num_threads(self) -> int:
        return int(self._fields[17])

    @property
    def start_ticks(self) -> int:
        """Clock ticks after boot: with the pid, the process's identity."""
        return int(self._fields[19])

    @property
    def kernel_thread(self) -> bool:
        """True for a kernel thread (kthreadd and those it starts), by what it
        is: PF_KTHREAD in its flags. Not by pid: in a PID namespace (a
        container under tini) PID 2 is the application, and the kernel's
        threads are not in view at all."""
        return bool(self.flags & PF_KTHREAD)

    def __repr__(self) -> str:
        return (
            f"ProcStat(pid={self.pid}, comm={self.comm!r}, state={self.state!r},"
            f" ppid={self.ppid}, start_ticks={self.start_ticks})"
        )


@access_checked
def read_stat(pid: int) -> ProcStat | None:
    """Return ``pid``'s ``/proc/PID/stat``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcStat(pid, data) if data else None


@access_checked
def read_children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s children, read from ``/proc``.

    ``/proc/PID/task/TID/children`` is O(children), where walking every
    process is O(host) (docs/FACTS.md, "Counting children"). Each thread
    has its own list (a thread that forked is the parent), so all tasks are
    read. The kernel documents the file as exact only while children are
    stopped: a child exiting during the read can hide its neighbours, so
    callers that need exact counts cross-check what disappears. Returns []
    if ``pid`` is gone.
    """
    children: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return children
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                data = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between listdir and open
        children.extend(int(p) for p in data.split())
    return children


def ancestors(pid: int) -> set[int]:
    """Return ``pid`` and every process above it, up to PID 1."""
    found = {pid}
    stat = read_stat(pid)
    while stat is not None and stat.ppid > 0 and stat.ppid not in found:
        found.add(stat.ppid)
        stat = read_stat(stat.ppid)
    return found


@functools.cache
def clock_ticks() -> int:
    """Clock ticks per second, the unit of ``/proc/PID/stat`` times."""
    return os.sysconf("SC_CLK_TCK")


def seconds_since_start(start_ticks: int) -> float:
    """Seconds from a process's start (``ProcStat.start_ticks``) to now.

    Both ends are on the boot clock (CLOCK_BOOTTIME, which the kernel uses
    for the start time), so a changed wall clock does not skew the age.
    """
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, now - start_ticks / clock_ticks())


def listen_queue_counters() -> dict[str, int] | None:
    """Return the TCP listen-queue overflow and drop counters, or None.

    Linux counts SYNs and handshakes dropped because a listen backlog was
    full (``ListenOverflows``, ``ListenDrops`` in ``/proc/net/netstat``).
    The counters cover the whole network namespace, every listener in it,
    not one server: callers must say so.
    """
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            try:
                return {
                    "overflows": int(table["ListenOverflows"]),
                    "drops": int(table["ListenDrops"]),
                }
            except (KeyError, ValueError):
                return None
    return None


def scan_zombies() -> tuple[list[ProcStat], int]:
    """Return every zombie process of the machine and how many processes were read.

    One pass over ``/proc/[0-9]*/stat`` that looks at one byte of each
    process (its state) and parses only the zombies: about 5 µs a process,
    where psutil's ``process_iter`` + ``status()`` costs about 50, and
    ``ps -eo pid,ppid,stat`` about 20 (docs/FACTS.md, "Counting children").
    Raw ``os.open``/``os.read`` relative to a ``/proc`` directory fd skip
    the file objects and the path walk from ``/``.

    A thread-group leader whose main thread exited while other threads run
    shows state Z (``ps`` prints ``Zl``) but is alive and cannot be
    collected yet; it is left out: nothing its parent does would change it.
    With ``hidepid=2`` on ``/proc`` other users' processes are invisible
    (see ``_platform.proc_hides_processes``); in a PID namespace, only its
    processes.
    """
    zombies: list[ProcStat] = []
    count = 0
    open_, read, close = os.open, os.read, os.close
    rdonly = os.O_RDONLY
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(proc):
            if not name.isdigit():
                continue  # self, sys, meminfo, ...
            try:
                fd = open_(name + "/stat", rdonly, dir_fd=proc)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited since listdir
            try:
                data = read(fd, 4096)
            except ProcessLookupError:
                continue  # exited between open and read
            finally:
                close(fd)
            if not data:
                continue
            count += 1
            # The state is the byte two past the last ')'; 90 is ord("Z").
            if data[data.rindex(b")") + 2] == 90:
                stat = ProcStat(int(name), data)
                if stat.group_exited:
                    zombies.append(stat)
    finally:
        os.close(proc)
    return zombies, count


# -- the monitor's reads: /proc descriptors kept open ------------------------

# At most this many descriptors are kept open (two per process at most); past
# it, reads open and close. A quarter of RLIMIT_NOFILE's soft limit, if that
# is lower: the watched program's own files must never run short because of us.
MAX_KEPT_FDS = 4096


def kept_fd_limit() -> int:
    """Return how many ``/proc`` descriptors a ``ProcReader`` may keep open now."""
    import resource  # POSIX only, and only the monitor needs it

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_KEPT_FDS
    return max(0, min(MAX_KEPT_FDS, soft // 4))


def _read_to_end(fd: int) -> bytes:
    # A seq_file read returns at most one page whatever was asked for, so a
    # long children list takes several reads; a leaf's takes one.
    data = chunk = os.pread(fd, 65536, 0)
    while chunk:
        chunk = os.pread(fd, 65536, len(data))
        data += chunk
    return data


def _close_all(fds: dict[int, list[int]], tasks: dict[int, dict[str, list[int]]]) -> None:
    # Module-level, not a method: weakref.finalize must not hold the reader.
    for kept in [*fds.values(), *(k for threads in tasks.values() for k in threads.values())]:
        for fd in kept:
            if fd >= 0:
                os.close(fd)
    fds.clear()
    tasks.clear()


class ProcReader:
    """Re-read processes' ``/proc`` files through descriptors kept open.

    Per process, ``/proc/PID/stat`` stays open and is re-read with
    ``pread``: one read gives the state and the thread count, at about 3 µs
    where open/read/close costs 7 and psutil's ``status()`` 14
    (docs/BENCHMARKS.md, M1). A single-threaded process's children come
    from its kept ``/proc/PID/task/PID/children``. A process with several
    threads (each keeps its own list of the children it forked) has its
    task directory listed, and each thread's ``children`` and ``comm``
    kept: an empty list is checked against the thread's ``comm`` (ESRCH
    once the thread is gone; a third of the cost of ``stat``), so a thread
    number reused by a new thread is read afresh. Adopters such as PID 1,
    often multi-threaded and read every sample, cost a pread per thread
    instead of an open, a read and a close.

    A descriptor belongs to the process it was opened on, not to its
    number: once that process is collected, ``pread`` fails with ESRCH (a
    children file then reads empty), so a reused pid is never read as the
    old process. At most ``limit`` descriptors stay open (``MAX_KEPT_FDS``,
    or a quarter of RLIMIT_NOFILE's soft limit); past it, each read opens
    and closes. Callers ``forget`` a process that leaves their view and
    ``close`` the reader when done; whatever is still open when the reader
    is garbage-collected is closed then. Not thread-safe: the monitor calls
    it under its lock. Linux only (``_platform.can_use_proc_reader``).
    """

    def __init__(self) -> None:
        import weakref  # not in the forking server's imports; only the monitor's

        self.limit = kept_fd_limit()
        self._fds: dict[int, list[int]] = {}  # pid -> [stat fd, children fd or -1]
        # pid -> {tid: [its comm fd, its children fd]}, for multi-threaded ones
        self._tasks: dict[int, dict[str, list[int]]] = {}
        self._kept = 0
        weakref.finalize(self, _close_all, self._fds, self._tasks)

    @property
    def kept(self) -> int:
        """How many descriptors are open now."""
        return self._kept

    def pids(self) -> list[int]:
        """The processes with a descriptor open."""
        return list(self._fds.keys() | self._tasks.keys())

    @access_checked
    def stat(self, pid: int, renew: bool = False) -> ProcStat | None:
        """Return ``pid``'s ``stat``, or None if it is gone.

        With a descriptor kept, the answer is that process's: None once it
        has been collected, even if the number now belongs to another one.
        ``renew`` then reads the number's new owner instead, for callers
        that just saw the number listed as a child.
        """
        kept = self._fds.get(pid)
        if kept is not None:
            try:
                data = os.pread(kept[0], 1024, 0)
            except ProcessLookupError:  # ESRCH: collected
                data = b""
            if data:
                return ProcStat(pid, data)
            self.forget(pid)
            if not renew:
                return None
        try:
            fd = os.open(f"/proc/{pid}/stat", _RDONLY)
        except (FileNotFoundError, ProcessLookupError):
            return None  # gone before the open
        keep = False
        try:
            data = os.pread(fd, 1024, 0)
            if data and self._kept < self.limit:
                keep = True
                self._fds[pid] = [fd, -1]
                self._kept += 1
        except ProcessLookupError:
            return None  # collected between the open and the read
        finally:
            if not keep:
                os.close(fd)
        return ProcStat(pid, data) if data else None

    def reread(self, pid: int) -> ProcStat | None:
        """Re-read the ``stat`` of a process ``stat`` kept, or None: gone, or
        none kept. One pread, where psutil opens and parses the file twice
        more for a zombie's parent and name."""
        kept = self._fds.get(pid)
        if kept is None:
            return None
        try:
            data = os.pread(kept[0], 1024, 0)
        except ProcessLookupError:
            return None
        return ProcStat(pid, data) if data else None

    @access_checked
    def children(self, pid: int, threads: int) -> list[int]:
        """Return the pids of ``pid``'s children; ``threads`` comes from ``stat``
        (0 where unknown: every thread's list is read).

        Returns [] if ``pid`` is gone. The list has the same limits as
        ``read_children``'s: a child exiting during the read can hide others.
        """
        if threads != 1:
            return self._threads_children(pid)  # each thread keeps its own list
        if pid in self._tasks:
            self._forget_tasks(pid)  # it had several threads: one is left
        path = f"/proc/{pid}/task/{pid}/children"
        kept = self._fds.get(pid)
        if kept is not None and kept[1] < 0 and self._kept < self.limit:
            try:
                kept[1] = os.open(path, _RDONLY)
            except (FileNotFoundError, ProcessLookupError):
                return []
            self._kept += 1
        if kept is not None and kept[1] >= 0:
            # Once the process is collected this file reads empty, where the
            # stat file fails with ESRCH: either way, no children.
            try:
                return [int(p) for p in _read_to_end(kept[1]).split()]
            except ProcessLookupError:
                return []
        try:
            fd = os.open(path, _RDONLY)
        except (FileNotFoundError, ProcessLookupError):
            return []
        try:
            return [int(p) for p in _read_to_end(fd).split()]
        except ProcessLookupError:
            return []
        finally:
            os.close(fd)

    def _threads_children(self, pid: int) -> list[int]:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            self._forget_tasks(pid)
            return []
        kept = self._tasks.setdefault(pid, {})
        for tid in kept.keys() - set(tids):  # threads that ended
            self._close(kept.pop(tid))
        children: list[int] = []
        for tid in tids:
            children.extend(self._task_children(pid, tid, kept))
        return children

    def _task_children(self, pid: int, tid: str, kept: dict[str, list[int]]) -> list[int]:
        fds = kept.get(tid)
        if fds is not None:
            try:
                data = _read_to_end(fds[1])
            except ProcessLookupError:
                data = b""
            if data:
                return [int(p) for p in data.split()]
            try:
                if os.pread(fds[0], 1, 0):
                    return []  # the thread lives and has no children
            except ProcessLookupError:
                pass
            # The thread is gone, and its number may be a new thread's.
            self._close(kept.pop(tid))
        task = f"/proc/{pid}/task/{tid}"
        keep = self._kept + 2 <= self.limit  # else one open, read, close
        opened: list[int] = []
        try:
            if keep:
                opened.append(os.open(f"{task}/comm", _RDONLY))
            opened.append(os.open(f"{task}/children", _RDONLY))
            data = _read_to_end(opened[-1])
        except (FileNotFoundError, ProcessLookupError):
            data = b""  # the thread ended between listdir and read
        else:
            if keep:
                kept[tid] = opened
                self._kept += 2
                opened = []
        finally:
            for fd in opened:
                os.close(fd)
        return [int(p) for p in data.split()]

    def _close(self, fds: list[int]) -> None:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
                self._kept -= 1

    def _forget_tasks(self, pid: int) -> None:
        for fds in self._tasks.pop(pid, {}).values():
            self._close(fds)

    def forget(self, pid: int) -> None:
        """Close ``pid``'s descriptors, if any are open."""
        self._close(self._fds.pop(pid, []))
        self._forget_tasks(pid)

    def close(self) -> None:
        """Close every descriptor. Idempotent; later reads open afresh."""
        _close_all(self._fds, self._tasks)
        self._kept = 0


# -- who holds a listening port ------------------------------------------------

_TCP_LISTEN = "0A"  # st of a listening socket in /proc/net/tcp (TCP_LISTEN = 10)


def _tcp_address(hex_ip: str) -> str:
    """The text form of a ``/proc/net/tcp{,6}`` address: the kernel prints
    each 32-bit word of the network-order address as a host-order number."""
    import socket
    import struct

    raw = b"".join(struct.pack("=I", int(hex_ip[i : i + 8], 16)) for i in range(0, len(hex_ip), 8))
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def listening_sockets(port: int) -> dict[int, str]:
    """Return {socket inode: local address} of every TCP socket listening on ``port``.

    Read from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (proc(5)): one line
    per socket, ``local_address`` as HEXIP:HEXPORT, ``st`` 0A for LISTEN,
    and the socket's inode, which names it in ``/proc/PID/fd``
    (docs/FACTS.md, "Who holds a port"). Only this network namespace's.
    """
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 here
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            ip, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port:
                found[int(fields[9])] = _tcp_address(ip)
    return found


def socket_inodes(pid: int) -> set[int]:
    """Return the inodes of the sockets ``pid`` has open (``/proc/PID/fd``
    links read ``socket:[INODE]``); empty if it is gone or not ours to read."""
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def socket_holders(inodes: set[int]) -> list[int]:
    """Return the pids, of every process we can read, that hold one of ``inodes``."""
    holders = []
    for name in os.listdir("/proc"):
        if name.isdigit() and socket_inodes(int(name)) & inodes:
            holders.append(int(name))
    return sorted(holders)


def descendants(pid: int) -> list[int]:
    """Return ``pid`` and every process below it, from the children lists."""
    found, stack = [pid], [pid]
    while stack:
        for child in read_children(stack.pop()):
            if child not in found:
                found.append(child)
                stack.append(child)
    return found
