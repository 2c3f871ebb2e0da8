"""``reaper-thread``: a thread that does nothing but block in ``waitpid``.

The classic "a dedicated thread can do nothing but reap" (docs/DESIGN.md,
Reaping modes). The thread blocks in ``waitpid(-1, 0)`` and collects each
child as it exits, without signals.
With no children ``waitpid`` fails at once with ECHILD, so the thread then
sleeps on an event that the next fork sets. Cost: one wakeup per exit, and
``threading`` in the forking parent (its at-fork hooks run in every child).
Like every ``waitpid(-1)``, it steals other code's children. Expected: PASS.

Reap latency is the GIL's: after each ``waitpid`` returns, the thread needs
the GIL back before it can wait again, and the busy accepting thread gives
it up only every switch interval (``sys.getswitchinterval()``, 5 ms). So
one collection per switch interval at worst: under a flood, exits queue up
behind one another (zombie lifetime p99 ~50-70 ms in docs/BENCHMARKS.md,
against ~12 ms for ``sigchld``). Shortening
the interval would speed this up and slow everything else; the lesson is
the cost.
"""

from __future__ import annotations

import os

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from zombiewatch.modes.base import ServerHooks


@register
class ReaperThreadReaper(ForkingReaper):
    """Collect children from a thread blocked in ``waitpid(-1, 0)``."""

    name = "reaper-thread"
    summary = "a thread blocked in waitpid(-1, 0) collects each child"

    _forked: threading.Event

    def install(self, server: ServerHooks) -> None:
        super().install(server)
        # Imported here, not at the top: other modes must not pay threading's
        # at-fork hooks on every fork.
        import threading

        self._forked = threading.Event()
        threading.Thread(target=self._reap_forever, name="zombiewatch-reaper", daemon=True).start()

    def on_fork(self, pid: int) -> None:
        self._forked.set()

    def _reap_forever(self) -> None:
        while True:
            # Clear before waiting: a fork after this line either leaves a
            # child for waitpid to find or sets the event again, so no child
            # is missed between ECHILD and the sleep.
            self._forked.clear()
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                self._forked.wait()
