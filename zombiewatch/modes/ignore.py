"""``ignore``: SIGCHLD set to SIG_IGN, so the kernel reaps.

POSIX.1-2001: when SIGCHLD is ignored, children do not become zombies and
are discarded at exit. No code runs per child, but exit statuses are lost,
and ``wait()`` blocks until every child has exited and then fails with
ECHILD, which breaks any library in the process (``subprocess``) that waits
for its own children. Expected: PASS.
"""

from __future__ import annotations

import signal

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zombiewatch.modes.base import ServerHooks


@register
class IgnoreReaper(ForkingReaper):
    """Let the kernel discard children: no zombies, no exit statuses."""

    name = "ignore"
    summary = "SIGCHLD set to SIG_IGN: the kernel reaps, exit statuses are lost"

    def install(self, server: ServerHooks) -> None:
        super().install(server)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    # close(blocking=True) keeps the default: with SIGCHLD ignored, waitpid
    # blocks until every child has exited, then raises ChildProcessError.
