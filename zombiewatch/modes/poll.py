"""``poll``: a ``waitpid(-1, WNOHANG)`` loop each time a client connects.

Children are collected only when a client connects, before its worker is
forked. Children that finish after the last connection stay zombies until
the next one arrives, which in a test is never: a lingering leak.
socketserver's ``ForkingMixIn.collect_children`` is the same idea: it runs
on each pass of its loop (``service_actions``). Here a pass that forks
nothing (a client that gave up before ``accept()``) collects nothing, so
the leak does not depend on stray wakeups. Cost: one ``waitpid`` per
finished child plus one per connection. ``waitpid(-1)`` collects any child
of the process, including ones another part of it started.
Expected: FAIL (lingering).
"""

from __future__ import annotations

from zombiewatch.modes import register
from zombiewatch.modes.base import FAIL, ForkingReaper, reap_pending

TYPE_CHECKING = False  # not typing's: the forking parent stays small (base.py)
if TYPE_CHECKING:
    import socket


@register
class PollReaper(ForkingReaper):
    """Collect finished children each time a client connects."""

    name = "poll"
    expected = FAIL
    summary = "waitpid(-1, WNOHANG) as each client connects: the last children linger"

    def spawn(self, conn: socket.socket) -> None:
        reap_pending()
        super().spawn(conn)
