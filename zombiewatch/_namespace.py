"""Start a program as PID 1 of a new PID namespace, with its own mount
namespace and ``/proc``, as a container runtime does (Linux: as root, else
through ``unshare(1)`` in a user namespace, ``spawn_pid1_in_userns``).

``unshare(CLONE_NEWPID)`` does not move the caller: it makes the caller's
*next* child PID 1 of a new namespace (docs/FACTS.md, "PID namespaces").
So the runner unshares, starts the program with ``subprocess`` (its child,
seen from the host under a host pid), and at once joins its own namespace
again with ``setns`` so that nothing else it starts (the load, the
flooder) lands in there. Between fork and exec the child, already PID 1,
unshares a mount namespace, makes every mount private (so nothing it
mounts shows on the host), mounts a ``/proc`` of its own namespace, and
asks for SIGKILL when the runner dies: the one signal PID 1 of a
namespace cannot ignore from its parent's namespace, and its death takes
every process of the namespace with it.

The system calls go through ``os.unshare``/``os.setns`` where Python has
them (3.12+), else through libc with ctypes (3.10, 3.11). Deciding what
to measure is ``pid1``'s; this module only starts the program.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from zombiewatch import _platform, _procfs, _proctl
from zombiewatch._backoff import poll_until
from zombiewatch._proctl import PR_SET_PDEATHSIG
from zombiewatch.errors import UnsupportedError, ZombiewatchError

# <linux/sched.h> and <sys/mount.h>: stable kernel ABI.
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000

# One namespace start at a time: between unshare and setns every child
# this process forks would become PID 1 of the new namespace.
_starting = threading.Lock()


class _Libc:
    """The libc calls Python lacks (all of them before 3.12: mount always)."""

    def __init__(self) -> None:
        import ctypes  # only for a --pid1 run; never on import

        self._ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.unshare_fn = libc.unshare
        self.setns_fn = libc.setns
        self.mount_fn = libc.mount
        self.mount_fn.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p,
        ]  # fmt: skip
        self.prctl_fn = libc.prctl

    def check(self, result: int, what: str) -> None:
        if result != 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self.check(self.unshare_fn(flags), "unshare")

    def setns(self, fd: int, nstype: int) -> None:
        self.check(self.setns_fn(fd, nstype), "setns")

    def mount(self, source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> None:
        self.check(self.mount_fn(source, target, fstype, flags, None), "mount")


def unshare(flags: int, libc: _Libc | None = None) -> None:
    """``unshare(2)``: ``os.unshare`` where Python has it, else libc."""
    if libc is None and _platform.can_use_os_unshare():
        os.unshare(flags)  # type: ignore[attr-defined,unused-ignore]  # 3.12+
    else:
        (libc or _Libc()).unshare(flags)


def setns(fd: int, nstype: int, libc: _Libc | None = None) -> None:
    """``setns(2)``: ``os.setns`` where Python has it, else libc."""
    if libc is None and _platform.can_use_os_unshare():
        os.setns(fd, nstype)  # type: ignore[attr-defined,unused-ignore]  # 3.12+
    else:
        (libc or _Libc()).setns(fd, nstype)


def _pid1_preexec(libc: _Libc, report_fd: int, runner_fd: int) -> Callable[[], None]:
    """Return the ``preexec_fn`` that makes the child a container's PID 1.

    What fails is written to ``report_fd`` and the child exits 127: an
    exception raised in a ``preexec_fn`` reaches the parent without its
    errno. ``runner_fd`` is a pidfd of the runner: the parent-death signal
    is lost if the runner died before it was set, and ``getppid()`` cannot
    tell (it is 0 in a new PID namespace: the parent is outside it).
    """

    def preexec() -> None:
        step = "prctl(PR_SET_PDEATHSIG)"
        try:
            libc.check(libc.prctl_fn(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), step)
            if select.select([runner_fd], [], [], 0)[0]:
                os._exit(1)  # the runner died before prctl took effect
            step = "unshare(CLONE_NEWNS)"
            libc.unshare(CLONE_NEWNS)
            # "/" is often a shared mount (systemd): without this the new
            # /proc would be mounted on the host's /proc too.
            step = "mount --make-rprivate /"
            libc.mount(None, b"/", None, MS_REC | MS_PRIVATE)
            step = "mount -t proc proc /proc"
            libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError as err:
            os.write(report_fd, f"{step}: {os.strerror(err.errno or 0)}".encode())
            os._exit(127)

    return preexec


class NotPermitted(UnsupportedError):
    """This process may not create a PID namespace itself (no CAP_SYS_ADMIN)."""


NEEDS = "creating one needs root (CAP_SYS_ADMIN), which this process does not have"


def _refusal(err: OSError) -> UnsupportedError:
    if err.errno in (errno.EPERM, errno.EACCES):
        return NotPermitted(
            f"--pid1 cannot create a PID namespace: {NEEDS} ({os.strerror(err.errno)})"
        )
    return UnsupportedError(f"--pid1 cannot create a PID namespace: {err}")


def spawn_pid1(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` as PID 1 of new PID and mount namespaces; return its Popen.

    The Popen's pid is the program's host pid. Raises ``NotPermitted``
    without the privilege (``spawn_pid1_in_userns`` may still do it),
    ``UnsupportedError`` (exit 2) where namespaces cannot be created here,
    ``ZombiewatchError`` where the program cannot be started.
    """
    if not _platform.LINUX:
        raise UnsupportedError("--pid1 needs Linux PID namespaces")
    libc = _Libc()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    runner_fd = os.pidfd_open(os.getpid())
    own_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _starting:
            try:
                unshare(CLONE_NEWPID)
            except OSError as err:
                raise _refusal(err) from err
            try:
                proc = subprocess.Popen(
                    argv,
                    # Both descriptors are close-on-exec: open in preexec_fn,
                    # gone once the program runs, so EOF on report_r means exec.
                    preexec_fn=_pid1_preexec(libc, report_w, runner_fd),
                    **popen,
                )
            finally:
                # Back to our own namespace for every later child.
                setns(own_ns, CLONE_NEWPID)
        os.close(report_w)
        report_w = -1
        failure = _read_all(report_r)  # EOF at the child's exec or exit
    except OSError as err:
        raise ZombiewatchError(f"cannot run {argv[0]}: {err.strerror}") from err
    finally:
        for fd in (report_r, report_w, runner_fd, own_ns):
            if fd >= 0:
                os.close(fd)
    if failure:
        proc.wait()
        if "Operation not permitted" in failure or "Permission denied" in failure:
            raise UnsupportedError(f"--pid1 cannot set up the namespace: {failure}")
        raise ZombiewatchError(f"--pid1 cannot set up the namespace: {failure}")
    return proc


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def ns_pid(pid: int) -> int | None:
    """``pid``'s pid in its innermost PID namespace (the last of
    ``/proc/PID/status`` NSpid), or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


# The switches that turn user namespaces off for unprivileged users, and
# the value that does it (docs/FACTS.md, "PID namespaces"): unshare(1)
# then says only ENOSPC or EPERM, which does not name the cause.
_USERNS_SWITCHES = (
    ("user.max_user_namespaces", "0"),
    ("kernel.unprivileged_userns_clone", "0"),  # Debian's kernels
    ("kernel.apparmor_restrict_unprivileged_userns", "1"),  # Ubuntu 23.10+
)


def userns_switch() -> str:
    """`` (user namespaces are off here: sysctl NAME = VALUE)`` for the
    first switch set that way, else ``""``."""
    for name, off in _USERNS_SWITCHES:
        try:
            with open("/proc/sys/" + name.replace(".", "/")) as f:
                value = f.read().strip()
        except OSError:
            continue  # not this kernel's
        if value == off:
            return f" (user namespaces are off here: sysctl {name} = {off})"
    return ""


# PID 1 of the user-namespace path waits for one line on its stdin before
# it becomes the program, so the runner can find its host pid first (as
# unshare's only child) even if the program would exit at once.
# Its stderr becomes its stdout (``run``'s CMD has both on one pipe):
# unshare's own stderr is a file of ours, read for the reason it failed.
_STUB = 'read -r _ || exit 1; exec "$@" </dev/null 2>&1'


def spawn_pid1_in_userns(
    argv: list[str], timeout: float = 10.0, **popen: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` as PID 1 of new user, PID and mount namespaces, for a
    process without CAP_SYS_ADMIN; return unshare(1)'s Popen and PID 1's host pid.

    util-linux's ``unshare --user --map-root-user --pid --fork --mount-proc
    --kill-child`` does it (docs/FACTS.md, "PID namespaces"): this process
    cannot, as it would have to enter the user namespace itself and could
    not come back to start the load. unshare waits for PID 1 and exits
    with its status; ``--kill-child`` SIGKILLs PID 1 if unshare dies, and
    unshare gets SIGKILL if the runner dies. The program's stderr goes to
    its stdout. Raises ``UnsupportedError`` (exit 2) where it cannot be done.
    """
    helper, shell = shutil.which("unshare"), shutil.which("sh")
    if helper is None or shell is None:
        raise UnsupportedError(
            f"--pid1 cannot create a PID namespace: {NEEDS}, and unshare(1) (util-linux),"
            " which could make one in a user namespace, is not installed"
        )
    go_r, go_w = os.pipe()
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed below)
    command = [helper, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
               "--kill-child", "--", shell, "-c", _STUB, "sh", *argv]  # fmt: skip
    try:
        proc = subprocess.Popen(
            command,
            preexec_fn=_proctl.die_with_parent_preexec(signal.SIGKILL),
            **{**popen, "stdin": go_r, "stderr": log},
        )
    except BaseException:
        log.close()
        raise
    finally:
        os.close(go_r)
    try:

        def started() -> list[int] | bool:
            return _procfs.read_children(proc.pid) or proc.poll() is not None

        poll_until(started, timeout, max_step=0.05)
        children = _procfs.read_children(proc.pid)
        if not children:
            proc.kill()
            proc.wait()
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"it exited with status {proc.returncode}"
            why += userns_switch()
            raise UnsupportedError(
                f"--pid1 cannot create a PID namespace: {NEEDS}, and a user namespace"
                f" failed too: {why}"
            )
        os.write(go_w, b"go\n")  # PID 1 becomes the program now
    finally:
        os.close(go_w)
        log.close()
    return proc, children[0]
