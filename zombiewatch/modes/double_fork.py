"""``double-fork``: the child forks the real worker and exits at once.

The parent collects the short-lived middle child straight away (it exits
before doing any work) and never sees the worker, which is orphaned and
adopted by the nearest child subreaper or by PID 1. The server itself never
holds a zombie; whether the worker's zombie lingers depends on its adopter:
the runner (a subreaper) collects it at once, a container whose PID 1 is an
application never does. Cost: two forks per connection. Expected: PASS,
with every worker counted as escaped.
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
            os.waitpid(pid, 0)  # the middle child is already exiting
        except ChildProcessError:
            pass
