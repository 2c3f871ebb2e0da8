"""The programs a measurement starts and stops, and the orphans they leave.

A target runs in its own session and is stopped with its whole tree; the
built-in server says it is ready with a JSON line, any other program by
listening on a port. On Linux the runner is a child subreaper for each
measurement, and ``OrphanCollector`` reaps, by pid, what the target
orphans. Stopping is guarded: SIGTERM to the runner becomes
``Interrupted``, and cleanup runs with SIGINT and SIGTERM held
(docs/DESIGN.md, Runner).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import psutil

from zombiewatch import _procfs, _proctl, server
from zombiewatch._backoff import poll_until
from zombiewatch._output import CommandOutput
from zombiewatch._text import log
from zombiewatch.errors import Interrupted, ServerStartError, ZombiewatchError

READY_TIMEOUT = 10.0  # seconds for a target to be ready (ready line, or its port)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL of a target's tree, or of a load


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until cleanup is done; they are delivered after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``Interrupted`` so cleanup runs as for Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def child_exited(pid: int) -> bool:
    """True once ``pid``, a child of ours, has exited, without reaping it.

    WNOWAIT leaves it a zombie, so its pid and process group id cannot be
    reused while we look; ``Popen.wait()`` collects it later. A child some
    other wait collected already (ECHILD) has exited too.
    """
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        # ESRCH: gone since the tree was read; EPERM: it changed its
        # credentials (setuid), and is not ours to stop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def read_ready_line(fd: int, timeout: float) -> dict[str, Any]:
    """Read the JSON line a process writes first on ``fd`` (its stdout).

    Reads one byte at a time and never past the newline, so what the
    process writes later (the server's "stopped" line) stays in the pipe
    for whoever reads on, a text-mode ``Popen.stdout`` included. A ready
    line is a few dozen bytes, read once per start.

    Raises ``TimeoutError`` if no whole line came within ``timeout``
    seconds, ``EOFError`` if the stream ended first (the process exited or
    closed its stdout), and ``ValueError`` if the line is not JSON.
    """
    line = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no ready line within {timeout:g} s")
            if not sel.select(remaining):
                continue
            byte = os.read(fd, 1)
            if not byte:
                raise EOFError("the stream ended before a ready line")
            line += byte
    ready: dict[str, Any] = json.loads(line)
    return ready


class Target:
    """A program we started, in its own session, that we stop with its tree.

    With ``output`` (``run``'s CMD), its stdout and stderr both go there:
    passed on as they come, the last lines kept. Without (the built-in
    server), ``stdout`` is given and stderr is kept in a file for ``log``.
    """

    def __init__(
        self,
        argv: list[str],
        stdout: int | IO[bytes] | None = None,
        output: CommandOutput | None = None,
    ) -> None:
        self.argv = argv
        self.output = output
        self._log_file: IO[bytes] | None = None
        stderr: int | IO[bytes]
        if output is not None:
            stdout = stderr = output.writer()
        else:
            if stdout is None:
                # Our stdout carries only the report (--json must parse): what
                # the program prints goes to our stderr, with the logs.
                stdout = sys.stderr.fileno()
            # A file, not a pipe, so a chatty target never blocks on a full
            # pipe that nobody reads during the run. Closed in stop().
            self._log_file = stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = self._popen(
                argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                start_new_session=True,
            )  # fmt: skip
        except OSError as err:
            self._close_output()
            raise ZombiewatchError(f"cannot run {argv[0]}: {err.strerror}") from err
        except BaseException:
            self._close_output()
            raise
        self.pid = self.proc.pid
        if output is not None:
            output.started(self.pid)
        self.log = ""
        self.stdout_tail = b""

    def _popen(self, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start the program (a subclass may start it elsewhere: ``pid1``)."""
        return subprocess.Popen(
            argv, preexec_fn=_proctl.die_with_parent_preexec(signal.SIGTERM), **popen
        )

    def tail(self) -> list[str]:
        """The last lines of the program's output (with ``output``)."""
        return self.output.tail() if self.output is not None else []

    def _close_output(self) -> None:
        if self.output is not None:
            self.output.finish()
        if self._log_file is not None:
            self._log_file.close()

    def exited(self) -> bool:
        """True once the program itself has exited (its tree may live on)."""
        return self.proc.returncode is not None or child_exited(self.pid)

    def failure(self) -> str:
        """One line on why the program ended early: its last stderr line."""
        self.proc.wait()
        if self.output is not None:
            self.output.wait(1.0)  # its last words, unless a child still holds the pipe
            lines = [line for line in self.output.tail() if line.strip()]
        else:
            lines = self._read_log().strip().splitlines()
        return lines[-1] if lines else f"exited with status {self.proc.returncode}"

    def _read_log(self) -> str:
        if self._log_file is None:
            return ""
        self._log_file.seek(0)
        return self._log_file.read().decode(errors="replace")

    def stop(self, tree: Callable[[], Iterable[int]]) -> None:
        """Stop the program and every process of ``tree()``, then reap it.

        The process group catches the usual case in one call; ``tree()``
        (the monitor's view: descendants and adopted members of the
        session) catches children that moved to another group. SIGTERM
        first, SIGKILL to whatever is left after the grace period.
        """
        pgid = self.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            # While the program is at worst an unreaped zombie, its pid, which
            # is also its group's id, cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            _signal_all(tree(), sig)
            if sig == signal.SIGTERM:
                poll_until(lambda: self.exited() and not any(True for _ in tree()), STOP_GRACE)
        self.proc.wait()
        if self.proc.stdout is not None:
            # What is left in the pipe; never block on a straggler holding it.
            os.set_blocking(self.proc.stdout.fileno(), False)
            self.stdout_tail = self.proc.stdout.read() or b""
            self.proc.stdout.close()
        self.log = self._read_log()
        self._close_output()


class ServerTarget(Target):
    """The built-in server, which prints a JSON ready line."""

    def __init__(self, config: server.Config) -> None:
        super().__init__(server.command(config), stdout=subprocess.PIPE)
        self.port = 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Read the ready line; raise ``ServerStartError`` if it never comes."""
        assert self.proc.stdout is not None
        try:
            ready = read_ready_line(self.proc.stdout.fileno(), timeout)
        except TimeoutError:
            raise ServerStartError(f"the server did not listen within {timeout:g} s") from None
        except EOFError:
            raise ServerStartError(self.failure()) from None
        self.port = int(ready["port"])

    def refused(self) -> int:
        """Connections the server refused because no worker could start
        (fork failed): from its last line, after ``stop()``."""
        return int(self._stopped().get("refused", 0))

    def accept_pauses(self) -> int:
        """Times the server, out of descriptors, paused accepting and left a
        client waiting unanswered: from its last line, after ``stop()``."""
        return int(self._stopped().get("accept_pauses", 0))

    def _stopped(self) -> dict[str, Any]:
        for line in self.stdout_tail.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "stopped":
                return dict(event)
        return {}


@functools.cache
def resolve(host: str) -> tuple[str, ...]:
    """Return every address ``host`` names, resolved once per process.

    Raises ``OSError`` (``socket.gaierror``) or ``UnicodeError`` if it
    does not resolve: the CLI checks before anything starts.
    """
    infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _serves(listener: str, addresses: tuple[str, ...]) -> str | None:
    """The address of ``addresses`` a socket listening on ``listener`` accepts
    connections to, or None: itself, or any (of its family, for 0.0.0.0)
    for a wildcard; a socket on ``::`` takes IPv4 too, unless IPV6_V6ONLY."""
    if listener in addresses:
        return listener
    if listener.startswith("::ffff:") and listener[7:] in addresses:
        return listener[7:]  # an IPv4-mapped address of a dual-stack socket
    for address in addresses:
        if listener == "::" or (listener == "0.0.0.0" and ":" not in address):
            return address
    return None


def _describe_holder(pid: int) -> str:
    try:
        return f"pid {pid} ({' '.join(psutil.Process(pid).cmdline()) or '?'})"
    except psutil.Error:
        return f"pid {pid}"


def wait_for_port(
    target: Target,
    host: str,
    port: int,
    timeout: float,
    orphans: Callable[[], Iterable[int]] = tuple,
) -> str:
    """Wait until the program under test listens on host:port; return the
    address to connect to there.

    The listener must be the program's: a socket of ``/proc/net/tcp{,6}``
    whose inode one of its tree's processes (``target`` and its
    descendants, and the ``orphans()`` it left to us and theirs) holds in
    ``/proc/PID/fd``. A port some other process holds would take the load
    meant for the program (which then failed to bind): that is
    ``ServerStartError`` naming the holder, as soon as the program exits
    or at the timeout.
    """
    addresses = resolve(host)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    found: dict[int, str] = {}  # inode -> address, of a listener there

    def ours() -> str | None:
        found.clear()
        for inode, listener in _procfs.listening_sockets(port).items():
            address = _serves(listener, addresses)
            if address is not None:
                found[inode] = address
        if not found:
            return None
        tree = _procfs.descendants(target.pid)
        for pid in orphans():
            tree += _procfs.descendants(pid)
        held = set().union(*(_procfs.socket_inodes(pid) for pid in tree))
        return next((found[inode] for inode in found if inode in held), None)

    def not_ours() -> ServerStartError | None:
        holders = _procfs.socket_holders(set(found)) if found else []
        if not holders:
            return None
        return ServerStartError(
            f"{where} is held by {_describe_holder(holders[0])}, not by the program under test"
        )

    address: str | None = None

    def listening() -> bool:
        nonlocal address
        address = ours()
        if address is None and target.exited():
            error = not_ours()
            raise error or ServerStartError(
                f"the command exited before listening: {target.failure()}"
            )
        return address is not None

    if not poll_until(listening, timeout, max_step=0.1):
        raise not_ours() or ServerStartError(
            f"the command did not listen on {where} within {timeout:g} s"
            " (--ready-timeout waits longer)"
        )
    assert address is not None
    return address


class OrphanCollector:
    """Reap, by pid, the orphans the kernel hands us as a subreaper.

    One per measurement, so pids reused between runs are counted again.
    """

    def __init__(self, subreaper: bool) -> None:
        self.subreaper = subreaper
        self.keep: set[int] = set()  # our own subprocesses: Popen waits for them
        self.adopted: set[int] = set()
        # pid -> when (time.monotonic_ns()) it was seen a zombie, noted
        # just before its reap: a monitor that sees it vanish knows the
        # adopter collected it, not the parent that exited
        # (TreeWatcher.adopter_reaps); the monitor takes it out.
        self.collecting: dict[int, int] = {}

    @property
    def works(self) -> bool:
        """True if ``collect()`` has work to do at each look (orphans to
        collect as a subreaper): the control loop then looks every
        ``--interval``."""
        return self.subreaper

    @property
    def adopters(self) -> list[int]:
        """Where orphans of what we start go: to us if we are a subreaper,
        else to init (or a subreaper above us, which we cannot see)."""
        return [os.getpid()] if self.subreaper else [1]

    def orphans(self) -> list[int]:
        """The processes we hold as an adopter now: the target's orphans."""
        if not self.subreaper:
            return []
        return [pid for pid in _procfs.read_children(os.getpid()) if pid not in self.keep]

    def collect(self) -> int:
        """Reap every adopted orphan that has exited; return how many remain."""
        if not self.subreaper:
            return 0
        remaining = 0
        for pid in _procfs.read_children(os.getpid()):
            if pid in self.keep:
                continue
            self.adopted.add(pid)
            try:
                if not child_exited(pid):
                    remaining += 1
                    continue
                self.collecting[pid] = time.monotonic_ns()
                os.waitpid(pid, 0)  # a zombie: returns at once
            except ChildProcessError:
                pass  # collected already
        return remaining


@contextlib.contextmanager
def orphan_collector(wanted: bool = True) -> Iterator[OrphanCollector]:
    """Be a child subreaper for one measurement, where the platform allows."""
    subreaper = wanted and _proctl.set_subreaper(True)
    if wanted and not subreaper:
        log("no child subreaper on this platform: orphans go to PID 1")
    try:
        yield OrphanCollector(subreaper)
    finally:
        if subreaper:
            _proctl.set_subreaper(False)
