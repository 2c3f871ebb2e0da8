"""What a person at a terminal sees while a run goes on: text only.

The ``--live`` screen (stdout) and the self-overwriting progress line
(stderr). The report of a finished run is ``report``'s concern; when to
redraw and where to write is the runner's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zombiewatch.monitor import MonitorStats, Zombie

CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase display (VT100)
CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line


def render_live(target: str, stats: MonitorStats, zombies: list[Zombie], elapsed: float) -> str:
    """One screen for ``--live``: redrawn in place while the run goes on."""
    last = stats.last
    oldest = max((z.age(last.t) for z in zombies), default=None) if last else None
    return "\n".join(
        [
            f"zombiewatch --live: {target}",
            f"elapsed        {elapsed:8.1f} s",
            f"live children  {last.live if last else 0:8d}   (max {stats.max_live_children})",
            f"zombies now    {last.zombies if last else 0:8d}   (peak {stats.peak_zombies},"
            f" seen {stats.zombies_seen})",
            f"oldest zombie  {'-' if oldest is None else f'{oldest:8.2f} s'}",
            "",
        ]
    )


def render_progress(elapsed: float, zombies: int, done: int | None, connections: int) -> str:
    """The progress line, to be written over the previous one.

    ``done`` is how many connections the load has finished, when it says.
    """
    count = "" if done is None else f"{done}/{connections} connections, "
    return f"{CLEAR_LINE}zombiewatch: {elapsed:6.1f} s, {count}{zombies} zombies now"
