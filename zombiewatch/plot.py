"""Draw a report as an image: zombies and live children over time, per run.

One row per mode (or program): on the left the timeline, live children as
a shaded area and zombies as a line over it, both as steps (a count holds
until the next sample changes it), the settle window shaded and the
leaked zombies marked at its end; on the right the distribution of zombie
lifetimes. The format is the file name's extension, any matplotlib writes
(PNG, SVG, PDF, ...). matplotlib is an optional extra (``pip install
matplotlib``, or the ``plot`` extra): nothing else imports this module.
"""

from __future__ import annotations

import os
from typing import Any

from zombiewatch.errors import writing
from zombiewatch.modes.base import PASS
from zombiewatch.report import Report, RunResult

# zombiewatch is not on PyPI: 'zombiewatch[plot]' would find nothing there.
INSTALL_HINT = "--plot needs matplotlib: pip install matplotlib"


def require_matplotlib() -> None:
    """Raise ImportError with the install hint if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err


def image_format(path: str) -> str:
    """The format matplotlib writes ``path`` in, from its extension; raise
    ValueError naming the formats it can write if there is none."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        what = f".{ext} is no image format" if ext else "it has no extension"
        raise ValueError(f"cannot draw {path!r}: {what}; use one of .{', .'.join(sorted(formats))}")
    return ext


def _timeline(ax: Any, run: RunResult) -> None:
    from matplotlib.ticker import MaxNLocator

    points = run.monitor.timeline.points
    # Process counts are whole numbers: no tick at 0.2 of a zombie.
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seconds since the first sample")
    ax.set_ylabel("processes")
    if not points:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        return
    t0 = points[0].t
    times = [p.t - t0 for p in points] + [run.end - t0]
    last = run.monitor.last or points[-1]
    live = [p.live for p in points] + [last.live]
    zombies = [p.zombies for p in points] + [last.zombies]
    # Counts change in steps and hold in between: drawn as steps, live
    # children as an area under the zombies' line, so a count that
    # flips between 0 and 1 (mode wait) reads as blocks, not as a comb of
    # vertical lines where one colour hides the other.
    ax.fill_between(times, live, step="post", color="tab:blue", alpha=0.25, linewidth=0,
                    label="live children")  # fmt: skip
    ax.plot(times, zombies, drawstyle="steps-post", color="tab:red", linewidth=1.5,
            label="zombies")  # fmt: skip
    ax.axvspan(run.load_end - t0, run.end - t0, color="grey", alpha=0.2, label="settle window")
    if run.leaked:
        ax.plot([run.end - t0], [run.leaked_count], marker="X", markersize=10, color="black",
                linestyle="none", label=f"{run.leaked_count} leaked")  # fmt: skip
    verdict = run.verdict.upper()
    expected = f" (expected {run.expected.upper()})" if run.expected else ""
    color = "tab:green" if run.verdict == PASS else "tab:red"
    ax.set_title(f"{run.name or run.mode}: {verdict}{expected}", loc="left", color=color,
                 fontsize=10)  # fmt: skip
    ax.set_xlim(0, max(times[-1], 1e-3) * 1.02)  # the leaked mark at the end, whole
    # Room above the highest count, so a count of 1 is not drawn on the frame.
    ax.set_ylim(0, max(1, *live, *zombies, run.leaked_count) * 1.15)
    # Beside the axes, not over the counts it names.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=7)


def _lifetimes(ax: Any, run: RunResult) -> None:
    from matplotlib.ticker import MaxNLocator

    lifetimes = [seconds * 1000 for seconds in run.monitor.lifetimes]
    ax.set_title("zombie lifetimes", loc="left", fontsize=10)
    if lifetimes:
        ax.hist(lifetimes, bins=30, color="tab:orange")
        if run.monitor.method != "events":
            # Sampled lifetimes are whole intervals; exact ones have no interval.
            interval = run.monitor.interval * 1000
            ax.axvline(interval, color="grey", linestyle="--", label="sampling interval")
            ax.legend(fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        # The unit once, on the axis: the ticks are bare numbers.
        ax.set_xlabel("lifetime (ms)")
        ax.set_ylabel("zombies")
    else:
        ax.text(0.5, 0.5, "no zombie was collected\nwhile watched", ha="center", va="center",
                transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])


def figure(report: Report) -> Any:
    """Build the report's figure (a ``matplotlib.figure.Figure``), a row per run."""
    require_matplotlib()
    # A Figure of its own, not pyplot's: no display, no global state.
    from matplotlib.figure import Figure

    rows = max(1, len(report.runs))
    fig = Figure(figsize=(12, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 1]})
    for row, run in zip(axes, report.runs, strict=False):
        _timeline(row[0], run)
        _lifetimes(row[1], run)
    fig.suptitle("zombiewatch: zombies and live children over time", fontsize=12)
    return fig


def plot(report: Report, path: str) -> None:
    """Write the report's runs as an image at ``path``, in the format its
    extension names; raise ZombiewatchError if it cannot."""
    with writing(path):
        figure(report).savefig(path, format=image_format(path), dpi=90)
