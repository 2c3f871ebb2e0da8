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
import sys
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
