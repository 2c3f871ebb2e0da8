"""``thread``: a detached thread per connection, no fork at all.

The threaded variant of the classic server: there are no child processes,
so there is nothing to reap and nothing can become a zombie. Threads are
daemons; the process exiting ends them. Costs one thread (stack, GIL
contention) per connection instead of one process. Expected: PASS, with no
child processes.
"""

from __future__ import annotations

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


@register
class ThreadReaper(ForkingReaper):
    """Serve each connection in a detached thread."""

    name = "thread"
    summary = "a detached thread per connection: no children, nothing to reap"

    @classmethod
    def available(cls) -> bool:
        return True  # needs no fork

    def spawn(self, conn: socket.socket) -> None:
        import threading  # only this mode pays for threading in the server

        threading.Thread(target=self.server.serve_worker, args=(conn,), daemon=True).start()

    def close(self, blocking: bool) -> None:
        pass  # no child processes to collect
