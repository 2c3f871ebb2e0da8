"""``poll``: a ``waitpid(-1, WNOHANG)`` loop before each ``accept()``.

Children are collected only when the loop turns, that is, when a client
connects. Children that finish after the last connection stay zombies until
the next one arrives, which in a test is never: a lingering leak.
socketserver's ``ForkingMixIn.collect_children`` works this way. Cost: one
``waitpid`` per finished child plus one per pass. ``waitpid(-1)`` collects
any child of the process, including ones another part of it started.
Expected: FAIL (lingering).
"""

from __future__ import annotations

from zombiewatch.modes import register
from zombiewatch.modes.base import FAIL, ForkingReaper, reap_pending


@register
class PollReaper(ForkingReaper):
    """Collect finished children once per pass of the accept loop."""

    name = "poll"
    expected = FAIL
    summary = "waitpid(-1, WNOHANG) before each accept: the last children linger"

    def tick(self) -> None:
        reap_pending()
