"""``none``: the parent never waits for its children: the negative control.

Every finished child stays in the process table as a zombie until the
server itself exits and its orphans are handed to a reaper (the runner, as
a child subreaper, or PID 1). Cost: nothing per child, one process-table
slot per connection forever. Expected verdict: FAIL, with one zombie per
connection.
"""

from __future__ import annotations

from zombiewatch.modes import register
from zombiewatch.modes.base import FAIL, ForkingReaper


@register
class NoneReaper(ForkingReaper):
    """Fork per connection and never collect a child."""

    name = "none"
    expected = FAIL
    summary = "the parent never waits: every finished child stays a zombie"

    def close(self, blocking: bool) -> None:
        # Even on shutdown: the zombies must be visible to whoever adopts them.
        pass
