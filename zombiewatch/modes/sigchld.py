"""``sigchld``: a SIGCHLD handler that loops ``waitpid(-1, WNOHANG)``.

The correct classic. Standard signals do not queue: when several children
exit before the handler runs, it runs once, so it must collect until
``waitpid`` says no more (pid 0 or ``ChildProcessError``). Python runs the
handler in the main thread between bytecodes, after the C-level handler
has only set a flag, which coalesces signals even further. Cost: O(finished
children) per signal. ``waitpid(-1)`` also collects children that other
code in the process started (a ``subprocess.Popen`` loses its status).
The handler does nothing but ``waitpid``: no logging, no locks (gunicorn
#3198). Expected: PASS.
"""

from __future__ import annotations

import signal

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper, reap_pending

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zombiewatch.modes.base import ServerHooks


@register
class SigchldReaper(ForkingReaper):
    """Collect every finished child from a SIGCHLD handler."""

    name = "sigchld"
    summary = "SIGCHLD handler looping waitpid(-1, WNOHANG): the correct classic"

    def install(self, server: ServerHooks) -> None:
        super().install(server)
        signal.signal(signal.SIGCHLD, self._handle_sigchld)

    def _handle_sigchld(self, signum: int, frame: object) -> None:
        reap_pending()

    def close(self, blocking: bool) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        reap_pending()
        super().close(blocking)
