"""The reaping-mode interface and the behaviour most modes share.

A mode decides two things: how a connection gets a worker (fork, by
default) and how finished workers are collected. The server calls five
hooks and knows nothing else about modes:

- ``install(server)`` once, before the first ``accept()``;
- ``spawn(conn)`` for each accepted connection: start a worker for it;
- ``on_fork(pid)`` after each fork, in the parent;
- ``tick()`` once per pass of the accept loop, before it blocks again
  (socketserver's ``service_actions``);
- ``close(blocking)`` when the server stops.

``spawn`` is a fifth hook (docs/DESIGN.md, Mode interface): ``thread`` serves without
forking and ``double-fork`` forks twice, and a flag in the server for each
would make every new worker shape an edit of ``server.py``. Its default,
fork then ``on_fork``, is what the other eight modes use unchanged.

The forking parent must stay small (each MB costs ~33 us per fork, see
docs/FACTS.md, Fork cost), so this module and the modes avoid ``typing`` and
``threading`` at import time; ``TYPE_CHECKING`` below is a local constant
that mypy treats as true.
"""

from __future__ import annotations

import os

from zombiewatch import _platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import ClassVar, Protocol

    class ServerHooks(Protocol):
        """What the server offers to a mode."""

        def fork_worker(
            self, conn: socket.socket, work: Callable[[socket.socket], None] | None = None
        ) -> int: ...

        def serve_worker(self, conn: socket.socket) -> None: ...

        def watch_fd(self, fd: int, callback: Callable[[], None]) -> None: ...

        def unwatch_fd(self, fd: int) -> None: ...

    class Reaper(Protocol):
        """One reaping mode; see the module docstring for the hooks."""

        name: ClassVar[str]
        expected: ClassVar[str]
        summary: ClassVar[str]
        child_delay: ClassVar[float]
        batch_accepts: ClassVar[bool]

        @classmethod
        def available(cls) -> bool: ...

        @classmethod
        def unavailable_reason(cls) -> str: ...

        def install(self, server: ServerHooks) -> None: ...

        def spawn(self, conn: socket.socket) -> None: ...

        def on_fork(self, pid: int) -> None: ...

        def tick(self) -> None: ...

        def close(self, blocking: bool) -> None: ...


PASS = "pass"
FAIL = "fail"


def reap_pending(waitpid: Callable[[int, int], tuple[int, int]] | None = None) -> int:
    """Collect every child that has already exited; return how many.

    Loops because one SIGCHLD (or one pass) can stand for several exits:
    standard signals do not queue. Stops at pid 0 (children remain, none
    finished) or ``ChildProcessError`` (no children left, or someone else
    collected them), which is the normal end, not an error. ``waitpid`` is
    looked up when called (tests script it; ``_record`` wraps it).
    """
    waitpid = waitpid or os.waitpid
    reaped = 0
    while True:
        try:
            pid, _status = waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def reap_all(waitpid: Callable[[int, int], tuple[int, int]] | None = None) -> int:
    """Block until every child has exited and been collected; return how many."""
    waitpid = waitpid or os.waitpid
    reaped = 0
    while True:
        try:
            waitpid(-1, 0)
        except ChildProcessError:
            return reaped
        reaped += 1


class ForkingReaper:
    """Default hooks: fork one child per connection; collect nothing.

    Subclasses override only the hooks their mechanism needs. ``close``
    collects what is left when asked to block, so a stopped server leaves no
    zombie; modes that must never wait (``none``) or cannot (``ignore``)
    override it.
    """

    name: ClassVar[str]
    expected: ClassVar[str] = PASS
    summary: ClassVar[str] = ""
    # Default --child-delay for runs of this mode: children stay alive until
    # the next multiple of this many seconds, so they exit in bursts. A burst
    # is what makes SIGCHLDs coalesce; every mode but `wait` (which would
    # serialise on it) is shown under bursts.
    child_delay: ClassVar[float] = 0.02
    # May the server accept (and fork for) a whole burst of waiting clients
    # per pass of its loop? Not for a mode that promises to collect each
    # child as soon as the loop sees it exit (pidfd): each would stay a
    # zombie through the whole batch.
    batch_accepts: ClassVar[bool] = True

    server: ServerHooks

    @classmethod
    def available(cls) -> bool:
        """Return True if this platform can run the mode."""
        return _platform.can_use_fork()

    @classmethod
    def unavailable_reason(cls) -> str:
        """Say why ``available()`` is False."""
        return "needs os.fork()"

    def install(self, server: ServerHooks) -> None:
        self.server = server

    def spawn(self, conn: socket.socket) -> None:
        self.on_fork(self.server.fork_worker(conn))

    def on_fork(self, pid: int) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self, blocking: bool) -> None:
        if blocking:
            reap_all()
