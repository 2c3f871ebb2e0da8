"""``sigchld-once``: a SIGCHLD handler that collects one child per signal.

The classic bug. It assumes one SIGCHLD per exited child, but standard
signals do not queue: children that exit while a SIGCHLD is already pending
add nothing, and Python runs its handler once for any number of C-level
deliveries. Each burst of exits therefore leaves all but one zombie, and
later signals each collect only one of the backlog. The runner's default
``--child-delay`` makes children exit in bursts, so this mode leaks on
every run. Expected: FAIL under a burst.
"""

from __future__ import annotations

import os
import signal

from zombiewatch.modes import register
from zombiewatch.modes.base import FAIL, ForkingReaper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zombiewatch.modes.base import ServerHooks


@register
class SigchldOnceReaper(ForkingReaper):
    """Collect exactly one child per SIGCHLD: bursts leak."""

    name = "sigchld-once"
    expected = FAIL
    summary = "SIGCHLD handler reaping one child per signal: bursts leak"

    def install(self, server: ServerHooks) -> None:
        super().install(server)
        signal.signal(signal.SIGCHLD, self._handle_sigchld)

    def _handle_sigchld(self, signum: int, frame: object) -> None:
        try:
            os.waitpid(-1, os.WNOHANG)  # the bug: no loop
        except ChildProcessError:
            pass

    def close(self, blocking: bool) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        super().close(blocking)
