"""``double-fork``: the child forks the real worker and exits at once.

The parent collects the short-lived middle child straight away (it exits
before doing any work) and never sees the worker, which is orphaned and
adopted by the nearest child subreaper or by PID 1. The server itself never
holds a zombie; whether the worker's zombie lingers depends on its adopter:
the runner (a subreaper) collects it at once, a container whose PID 1 is an
application never does. Cost: two forks per connection. Expected: PASS,
with every worker counted as escaped.

If the second fork fails (EAGAIN at a process limit), the middle child
tells the client ``ERROR server busy`` itself, because the parent has
already let go of the connection, and exits with status 1; the parent reads
that status and refuses the connection like a failed first fork (counted in
``fork_failures``).
"""

from __future__ import annotations

import os

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


@register
class DoubleForkReaper(ForkingReaper):
    """Fork twice so the worker is orphaned and adopted elsewhere."""

    name = "double-fork"
    summary = "the child forks the worker and exits: workers escape to a subreaper"

    def spawn(self, conn: socket.socket) -> None:
        self.on_fork(self.server.fork_worker(conn, work=self._orphan_worker))

    def _orphan_worker(self, conn: socket.socket) -> None:
        # Runs in the middle child, which exits as soon as this returns.
        self.server.fork_worker(conn)

    def on_fork(self, pid: int) -> None:
        try:
            _pid, status = os.waitpid(pid, 0)  # the middle child is already exiting
        except ChildProcessError:
            return
        if status != 0:
            # It exits 0 once the worker is forked; anything else (its fork
            # failed, or it was killed first) means no worker serves this
            # client. Raised here, the server counts the refusal.
            code = os.waitstatus_to_exitcode(status)
            raise OSError(f"the middle child could not fork the worker (status {code})")
