"""What a person at a terminal sees while a run goes on: text only.

The ``--live`` screen (stdout) and the self-overwriting progress line
(stderr). The report of a finished run is ``report``'s concern; when to
redraw and where to write is the runner's.

The screen is drawn on the terminal's alternate screen (xterm's private
mode 1049, the one full-screen programs such as ``less`` and ``top`` use):
leaving it gives back the normal screen as it was, the shell's scrollback
untouched, and the report is printed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zombiewatch._text import clip

if TYPE_CHECKING:
    from zombiewatch.monitor import MonitorStats, Zombie

# xterm control sequences (ECMA-48 CSI; 1049 and 25 are DEC private modes):
# save the cursor and switch to the alternate screen, hide the cursor; and
# back. terminfo calls the pairs smcup/rmcup and civis/cnorm.
ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"
HOME = "\x1b[H"  # cursor to the top left corner
ERASE_LINE = "\x1b[K"  # erase to the end of the line
ERASE_BELOW = "\x1b[J"  # erase from the cursor to the end of the screen
CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line

LOAD, WATCH, SETTLE, DONE = "load", "watch", "settle", "done"


@dataclass
class Phase:
    """Where the run is: its phase, and how far the load or the settle got."""

    name: str  # LOAD, WATCH (no load: watching the program), SETTLE or DONE
    done: int | None = None  # connections the flood finished, when it says
    connections: int | None = None  # the flood's total; None: no flood
    settle_left: float | None = None  # seconds of the settle window left
    settle: float = 0.0  # the whole settle window, seconds


def _phase_line(phase: Phase) -> str:
    text = phase.name
    if phase.name == SETTLE and phase.settle_left is not None:
        text += f", {phase.settle_left:.1f} of {phase.settle:g} s left"
    elif phase.name == DONE:
        text += ", stopping what the run started"
    return f"phase          {text}"


def render_live(
    title: str,
    phase: Phase,
    stats: MonitorStats,
    zombies: list[Zombie],
    elapsed: float,
    width: int = 80,
) -> str:
    """One screen for ``--live``: redrawn in place while the run goes on.

    Every line is cut to ``width``: a line that wrapped would push the
    screen down one row at each redraw.
    """
    last = stats.last
    oldest = max((z.age(last.t) for z in zombies), default=None) if last else None
    lines = [title, _phase_line(phase)]
    if phase.connections is not None:
        done = "?" if phase.done is None else phase.done
        lines.append(f"connections    {done} of {phase.connections} done")
    lines += [
        f"elapsed        {elapsed:8.1f} s",
        f"live children  {last.live if last else 0:8d}   (max {stats.max_live_children})",
        f"zombies now    {last.zombies if last else 0:8d}   (peak {stats.peak_zombies},"
        f" seen {stats.zombies_seen})",
        f"oldest zombie  {'-' if oldest is None else f'{oldest:8.2f} s'}",
    ]
    return "\n".join(clip(line, max(width, 4)) for line in lines)


def frame(screen: str) -> str:
    """``screen`` as written over the previous one: from the top left, each
    line erased to its end, and the rest of the screen below erased."""
    return HOME + "".join(line + ERASE_LINE + "\r\n" for line in screen.split("\n")) + ERASE_BELOW


def render_progress(elapsed: float, zombies: int, done: int | None, connections: int) -> str:
    """The progress line, to be written over the previous one.

    ``done`` is how many connections the load has finished, when it says.
    """
    count = "" if done is None else f"{done}/{connections} connections, "
    return f"{CLEAR_LINE}zombiewatch: {elapsed:6.1f} s, {count}{zombies} zombies now"
