"""Process control: subreaper, parent-death signal, sessions, the child
check and signalling a process that must still be the one we checked.

Everything here acts on processes or asks the kernel about one of ours;
reading ``/proc`` is ``_procfs``'s, probing what the platform offers is
``_platform``'s. ctypes is imported only by the calls that need ``prctl``,
never on import: the forking server imports ``_platform``, not this module.
"""

from __future__ import annotations

import errno
import os
import signal

from zombiewatch import _platform, _procfs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

# From <linux/prctl.h>; stable kernel ABI.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# __WALL from <linux/wait.h> (stable ABI; os does not export it): also count
# children whose exit signal is not SIGCHLD, which waitid skips by default.
_WALL = 0x40000000


def prctl(option: int, arg: int) -> None:
    """Call ``prctl(option, arg, 0, 0, 0)``; raise OSError if it fails."""
    import ctypes  # only the runner and the benchmarks need prctl

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
    if not _platform.LINUX:
        return False
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)
    except OSError:
        return False
    return True


def die_with_parent_preexec(sig: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child get ``sig`` when we die.

    Covers the one exit no cleanup code sees: SIGKILL of the runner. libc is
    loaded here, in the parent, so the child between fork and exec only
    makes one call. Returns None where PR_SET_PDEATHSIG does not exist.
    """
    if not _platform.LINUX:
        return None
    import ctypes

    libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        libc_prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before prctl took effect

    return preexec


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


def send_signal(pid: int, start_ticks: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it is still the process that started at ``start_ticks``.

    Returns False, sending nothing, when the process is gone or its pid now
    belongs to another process. With a pidfd the check cannot race: the fd
    pins the process that was checked, so a pid reused in between is never
    signalled. Without one, the window between the check and ``kill`` is a
    few microseconds. PermissionError propagates: the caller says so.
    """
    if _platform.can_use_pidfd() and hasattr(signal, "pidfd_send_signal"):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            stat = _procfs.read_stat(pid)
            if stat is None or stat.start_ticks != start_ticks:
                return False
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False  # it exited after the check (ESRCH)
        finally:
            os.close(fd)
        return True
    stat = _procfs.read_stat(pid)
    if stat is None or stat.start_ticks != start_ticks:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
