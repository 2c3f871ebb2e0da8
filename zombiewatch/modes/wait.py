"""``wait``: a blocking wait right after each fork.

The parent forks, then blocks in ``waitpid(pid, 0)`` until that child has
served its client and exited. No zombie survives, but the server serves one
client at a time: the accept queue grows behind the child, which is the
accept starvation this mode exists to show. (``waitpid(pid)`` rather than
``wait()``: with one child at a time they are the same, and the pid form
cannot steal a child that belongs to someone else.) Expected: PASS, with at
most one live child.
"""

from __future__ import annotations

import os

from zombiewatch.modes import register
from zombiewatch.modes.base import ForkingReaper


@register
class WaitReaper(ForkingReaper):
    """Fork, then block until the child exits: concurrency 1."""

    name = "wait"
    summary = "blocking wait after each fork: no zombies, one client at a time"
    # A delay would be paid once per connection, in series.
    child_delay = 0.0

    def on_fork(self, pid: int) -> None:
        try:
            os.waitpid(pid, 0)  # PEP 475: retried on EINTR
        except ChildProcessError:
            pass  # already collected: nothing left to wait for
