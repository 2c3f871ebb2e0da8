"""Platform flags and capability probes, each with the reason it gives.

Every ``sys.platform`` / ``hasattr(os, ...)`` test of the project lives here.
A probe tries the real call once and caches the answer: a seccomp filter
can make ``pidfd_open`` fail with EPERM on a kernel that has it, so
``hasattr`` alone would lie (psutil's ``can_use_pidfd_open`` does the
same). A probe that fails for want of a descriptor (EMFILE, ENFILE) says
"no" for now and is asked again next time: that is a passing shortage, not
a property of the platform.

Reading ``/proc`` is ``_procfs``'s and acting on processes ``_proctl``'s.
The forking server imports this module, so it imports neither ``typing``
nor ctypes (docs/FACTS.md, "Fork cost").
"""

from __future__ import annotations

import errno
import functools
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

POSIX = os.name == "posix"
LINUX = sys.platform.startswith("linux")

# Out of descriptors, in this process or the whole system: try again later.
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE})


class _Transient(Exception):
    """A probe could not tell, for want of a resource: do not cache."""


def _probe(check: Callable[[], bool]) -> Callable[[], bool]:
    """Cache ``check``'s answer, unless it raised ``_Transient``: then answer
    False this time and try the real call again next time."""
    answer: list[bool] = []

    @functools.wraps(check)
    def probe() -> bool:
        if not answer:
            try:
                answer.append(check())
            except _Transient:
                return False
        return answer[0]

    probe.cache_clear = answer.clear  # type: ignore[attr-defined]
    return probe


def _open_or_transient(opener: Callable[[], int]) -> int | None:
    """Return ``opener()``'s descriptor, None if it failed for good, and
    raise ``_Transient`` if it failed for want of descriptors."""
    try:
        return opener()
    except OSError as err:
        if err.errno in _TRANSIENT:
            raise _Transient from err
        return None


@functools.cache
def can_use_fork() -> bool:
    """Return True where ``os.fork`` exists (not on Windows)."""
    return hasattr(os, "fork")


@_probe
def can_use_pidfd() -> bool:
    """Return True if ``os.pidfd_open`` works here (Linux 5.3+, not filtered)."""
    if not hasattr(os, "pidfd_open"):
        return False
    fd = _open_or_transient(lambda: os.pidfd_open(os.getpid()))
    if fd is None:
        return False  # ENOSYS, or EPERM from a seccomp filter
    os.close(fd)
    return True


def pidfd_unavailable_reason() -> str:
    """Say why pidfds cannot be used, for the CLI's usage error."""
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open needs Linux 5.3+ and Python 3.9+"
    return "pidfd_open() failed here (old kernel or a seccomp filter)"


@_probe
def can_use_proc_reader() -> bool:
    """Return True if ``/proc/PID/stat`` can be kept open and re-read (Linux)."""
    if not LINUX or not hasattr(os, "pread"):
        return False
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    fd = _open_or_transient(lambda: os.open(f"/proc/{os.getpid()}/stat", flags))
    if fd is None:
        return False
    try:
        return b")" in os.pread(fd, 1024, 0)
    except OSError:
        return False
    finally:
        os.close(fd)


@functools.cache
def can_use_children_file() -> bool:
    """Return True if ``/proc/PID/task/TID/children`` exists (Linux 3.5+,
    CONFIG_PROC_CHILDREN): without it every look finds no child at all."""
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


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


def can_use_os_unshare() -> bool:
    """Return True where Python has ``os.unshare`` and ``os.setns`` (3.12+);
    elsewhere ``_namespace`` calls libc through ctypes."""
    return hasattr(os, "unshare") and hasattr(os, "setns")
