"""Platform flags, capability probes and the few direct reads of ``/proc``.

Every ``sys.platform`` / ``hasattr(os, ...)`` test of the project lives here.
Probes try the real call once and cache the answer: a seccomp filter can make
``pidfd_open`` fail with EPERM on a kernel that has it, so ``hasattr`` alone
would lie (psutil's ``can_use_pidfd_open`` does the same).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import time
from collections.abc import Callable

POSIX = os.name == "posix"
LINUX = sys.platform.startswith("linux")

# From <linux/prctl.h>; stable kernel ABI.
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def can_use_fork() -> bool:
    """Return True where ``os.fork`` exists (not on Windows)."""
    return hasattr(os, "fork")


@functools.cache
def can_use_pidfd() -> bool:
    """Return True if ``os.pidfd_open`` works here (Linux 5.3+, not filtered)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def pidfd_unavailable_reason() -> str:
    """Say why pidfds cannot be used, for the CLI's usage error."""
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open needs Linux 5.3+ and Python 3.9+"
    return "pidfd_open() failed here (old kernel or a seccomp filter)"


def _prctl(option: int, arg: int) -> None:
    import ctypes  # only the runner needs prctl; keep ctypes out of the server

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its orphaned descendants, or stop.

    Orphans of our children are then reparented to us instead of to PID 1,
    so the runner can count them and collect them at once. Returns False
    where that cannot be done: not Linux, or prctl refused (seccomp).
    """
    if not LINUX:
        return False
    try:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0)
    except OSError:
        return False
    return True


def die_with_parent_preexec(sig: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child get ``sig`` when we die.

    Covers the one exit no cleanup code sees: SIGKILL of the runner. libc is
    loaded here, in the parent, so the child between fork and exec only
    makes one call. Returns None where PR_SET_PDEATHSIG does not exist.
    """
    if not LINUX:
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before prctl took effect

    return preexec


def read_children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s children, read from ``/proc``.

    ``/proc/PID/task/TID/children`` is O(children), where walking every
    process is O(host); see FACTS.md. Each thread has its own list (a thread
    that forked is the parent), so all tasks are read. The kernel documents
    the file as exact only while children are stopped: a child exiting
    during the read can hide its neighbours, so callers that need exact
    counts cross-check what disappears. Returns [] if ``pid`` is gone.
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


# -- the monitor's reads: /proc descriptors kept open ------------------------

# At most this many descriptors are kept open (two per process at most); past
# it, reads open and close. A quarter of RLIMIT_NOFILE's soft limit, if that
# is lower: the watched program's own files must never run short because of us.
MAX_KEPT_FDS = 4096

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


def parse_status_threads(data: bytes) -> tuple[str, int]:
    """Return the psutil status and the thread count in ``/proc/PID/stat`` ``data``.

    The fields start after the *last* ``)``: comm (field 2) may itself hold
    spaces and parentheses. The state is field 3, num_threads field 20.
    """
    fields = data[data.rindex(b")") + 2 :].split(b" ", 18)
    return _STATES.get(fields[0], "?"), int(fields[17])


def parse_ppid_name(data: bytes) -> tuple[int, str]:
    """Return the parent pid (field 4) and the name (comm, field 2) in
    ``/proc/PID/stat`` ``data``: what psutil's ``ppid()`` and, for a
    zombie, ``name()`` answer."""
    name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
    fields = data[data.rindex(b")") + 2 :].split(b" ", 3)
    return int(fields[1]), name


@functools.cache
def can_use_proc_reader() -> bool:
    """Return True if ``/proc/PID/stat`` can be kept open and re-read (Linux)."""
    if not LINUX or not hasattr(os, "pread"):
        return False
    try:
        fd = os.open(f"/proc/{os.getpid()}/stat", _RDONLY)
    except OSError:
        return False
    try:
        parse_status_threads(os.pread(fd, 1024, 0))
    except (OSError, ValueError, IndexError):
        return False
    finally:
        os.close(fd)
    return True


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


def _close_kept(fds: dict[int, list[int]], tasks: dict[int, dict[str, list[int]]]) -> None:
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
    (BENCHMARKS.md, M1). A single-threaded process's children come from its
    kept ``/proc/PID/task/PID/children``. A process with several threads
    (each keeps its own list of the children it forked) has its task
    directory listed, and each thread's ``children`` and ``comm`` kept: an
    empty list is checked against the thread's ``comm`` (ESRCH once the
    thread is gone; a third of the cost of ``stat``), so a thread number
    reused by a new thread is read afresh. Adopters such as PID 1, often
    multi-threaded and read every sample, cost a pread per thread instead
    of an open, a read and a close.

    A descriptor belongs to the process it was opened on, not to its
    number: once that process is collected, ``pread`` fails with ESRCH (a
    children file then reads empty), so a reused pid is never read as the
    old process. At most ``limit`` descriptors stay open (``MAX_KEPT_FDS``,
    or a quarter of RLIMIT_NOFILE's soft limit); past it, each read opens
    and closes. Callers ``forget`` a process that leaves their view and
    ``close`` the reader when done; whatever is still open when the reader
    is garbage-collected is closed then. Not thread-safe: the monitor calls
    it under its lock. Linux only (``can_use_proc_reader``).
    """

    def __init__(self) -> None:
        import weakref  # not in the forking server's imports; only the monitor's

        self.limit = kept_fd_limit()
        self._fds: dict[int, list[int]] = {}  # pid -> [stat fd, children fd or -1]
        # pid -> {tid: [its comm fd, its children fd]}, for multi-threaded ones
        self._tasks: dict[int, dict[str, list[int]]] = {}
        self._kept = 0
        weakref.finalize(self, _close_kept, self._fds, self._tasks)

    @property
    def kept(self) -> int:
        """How many descriptors are open now."""
        return self._kept

    def pids(self) -> list[int]:
        """The processes with a descriptor open."""
        return list(self._fds.keys() | self._tasks.keys())

    def stat(self, pid: int, renew: bool = False) -> tuple[str, int] | None:
        """Return ``pid``'s psutil status and thread count, or None if it is gone.

        With a descriptor kept, the answer is that process's: None once it
        has been collected, even if the number now belongs to another one.
        ``renew`` then reads the number's new owner instead, for callers
        that just saw the number listed as a child. PermissionError
        propagates.
        """
        kept = self._fds.get(pid)
        if kept is not None:
            try:
                data = os.pread(kept[0], 1024, 0)
            except ProcessLookupError:  # ESRCH: collected
                data = b""
            if data:
                return parse_status_threads(data)
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
        return parse_status_threads(data) if data else None

    def ppid_name(self, pid: int) -> tuple[int, str] | None:
        """Return the parent pid and name of a process ``stat`` read, or None
        if it is gone: one more pread of its kept descriptor, where psutil
        opens and parses ``/proc/PID/stat`` twice more."""
        kept = self._fds.get(pid)
        if kept is None:
            return None
        try:
            data = os.pread(kept[0], 1024, 0)
        except ProcessLookupError:
            return None
        return parse_ppid_name(data) if data else None

    def children(self, pid: int, threads: int) -> list[int]:
        """Return the pids of ``pid``'s children; ``threads`` comes from ``stat``.

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
        _close_kept(self._fds, self._tasks)
        self._kept = 0


def session_of(pid: int) -> int | None:
    """Return ``pid``'s session id, or None if it is gone."""
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None
    except OSError as err:
        if err.errno == errno.EPERM:  # other session on some BSDs; not Linux
            return None
        raise


@functools.cache
def can_use_children_file() -> bool:
    """Return True if ``/proc/PID/task/TID/children`` exists (Linux 3.5+,
    CONFIG_PROC_CHILDREN): without it every look finds no child at all."""
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


# __WALL from <linux/wait.h> (stable ABI; os does not export it): also count
# children whose exit signal is not SIGCHLD, which waitid skips by default.
_WALL = 0x40000000


def has_children() -> bool:
    """Return True if this process has a child, in any thread, zombies included.

    One ``waitid`` with WNOWAIT: it reports without collecting anything,
    and ECHILD means no child at all. Far cheaper than reading the
    children files, and most callers (tests) start no process.
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
    except ChildProcessError:
        return False
    return True


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


# -- the machine-wide zombie scan (``zombiewatch scan``) ---------------------

# PF_KTHREAD from <linux/sched.h> (stable ABI): the per-task flag, field 9
# of /proc/PID/stat, that marks a kernel thread.
PF_KTHREAD = 0x00200000


class ProcStat:
    """The fields of ``/proc/PID/stat`` that the scan needs.

    A plain slotted class, not a NamedTuple: the forking server imports this
    module and must not pay for ``typing`` (see ``modes/base.py``).
    """

    __slots__ = ("comm", "flags", "num_threads", "pid", "ppid", "start_ticks", "state")

    def __init__(
        self,
        pid: int,
        comm: str,
        state: str,
        ppid: int,
        flags: int,
        num_threads: int,
        start_ticks: int,
    ) -> None:
        self.pid = pid
        self.comm = comm  # the kernel's name: at most 15 bytes, never the command line
        self.state = state  # one letter: R S D Z T t X I ...
        self.ppid = ppid
        self.flags = flags  # PF_* task flags
        self.num_threads = num_threads
        self.start_ticks = start_ticks  # clock ticks after boot: with pid, its identity

    def __repr__(self) -> str:
        return (
            f"ProcStat(pid={self.pid}, comm={self.comm!r}, state={self.state!r},"
            f" ppid={self.ppid}, start_ticks={self.start_ticks})"
        )

    @property
    def kernel_thread(self) -> bool:
        """True for kthreadd and the kernel threads it starts."""
        return bool(self.flags & PF_KTHREAD) or self.pid == 2 or self.ppid == 2


def _parse_stat(pid: int, data: bytes) -> ProcStat:
    # comm may hold spaces and parentheses, so the fields start after the
    # *last* ')' (proc(5)); everything before it up to the first '(' is comm.
    close = data.rindex(b")")
    comm = data[data.index(b"(") + 1 : close].decode("utf-8", "replace")
    fields = data[close + 2 :].split()
    return ProcStat(
        pid=pid,
        comm=comm,
        state=fields[0].decode("ascii", "replace"),
        ppid=int(fields[1]),
        flags=int(fields[6]),
        num_threads=int(fields[17]),
        start_ticks=int(fields[19]),
    )


def read_stat(pid: int) -> ProcStat | None:
    """Return ``pid``'s ``/proc/PID/stat`` fields, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return _parse_stat(pid, data) if data else None


def scan_zombies() -> tuple[list[ProcStat], int]:
    """Return every zombie process of the machine and how many processes were read.

    One pass over ``/proc/[0-9]*/stat`` that looks at one byte of each
    process (its state) and parses only the zombies: about 5 µs a process,
    where psutil's ``process_iter`` + ``status()`` costs about 50 (FACTS.md),
    and ``ps -eo pid,ppid,stat`` about 20. Raw ``os.open``/``os.read``
    relative to a ``/proc`` directory fd skip the file objects and the path
    walk from ``/``.

    A thread-group leader whose main thread exited while other threads run
    shows state Z (``ps`` prints ``Zl``) but is alive and cannot be
    collected yet; it is left out: nothing its parent does would change it.
    With ``hidepid=2`` on ``/proc`` other users' processes are invisible
    (see ``proc_hides_processes``); in a PID namespace, only its processes.
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
                stat = _parse_stat(int(name), data)
                if stat.num_threads <= 1:
                    zombies.append(stat)
    finally:
        os.close(proc)
    return zombies, count


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


def ancestors(pid: int) -> set[int]:
    """Return ``pid`` and every process above it, up to PID 1."""
    found = {pid}
    stat = read_stat(pid)
    while stat is not None and stat.ppid > 0 and stat.ppid not in found:
        found.add(stat.ppid)
        stat = read_stat(stat.ppid)
    return found


def send_signal(pid: int, start_ticks: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it is still the process that started at ``start_ticks``.

    Returns False, sending nothing, when the process is gone or its pid now
    belongs to another process. With a pidfd the check cannot race: the fd
    pins the process that was checked, so a pid reused in between is never
    signalled. Without one, the window between the check and ``kill`` is a
    few microseconds. PermissionError propagates: the caller says so.
    """
    if can_use_pidfd() and hasattr(signal, "pidfd_send_signal"):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            stat = read_stat(pid)
            if stat is None or stat.start_ticks != start_ticks:
                return False
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False  # it exited after the check (ESRCH)
        finally:
            os.close(fd)
        return True
    stat = read_stat(pid)
    if stat is None or stat.start_ticks != start_ticks:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def proc_hides_processes() -> bool:
    """Return True if ``/proc`` is mounted with ``hidepid`` set to hide processes.

    With ``hidepid=2`` (``invisible``) or ``4`` (``ptraceable``) an
    unprivileged user does not even see other users' pids, so a scan that
    finds nothing may have missed them; ``hidepid=1`` only hides contents.
    """
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
        fields = line.split()
        if len(fields) < 5 or fields[4] != "/proc" or " - proc " not in line:
            continue
        superopts = line.rsplit(" ", 1)[-1].split(",")
        for opt in superopts:
            if opt in ("hidepid=2", "hidepid=4", "hidepid=invisible", "hidepid=ptraceable"):
                return True
    return False
