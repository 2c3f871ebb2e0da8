"""Draw a report as a PNG: zombies and live children over time, per run.

One row per mode (or program): on the left the timeline, zombies and live
children per sample, the settle window shaded and the leaked zombies
marked at its end; on the right the distribution of zombie lifetimes.
matplotlib is an optional extra (``pip install matplotlib``, or the ``plot`` extra):
nothing else imports this module.
"""

from __future__ import annotations

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


def _timeline(ax: Any, run: RunResult) -> None:
    points = run.monitor.timeline.points
    if not points:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        return
    t0 = points[0].t
    times = [p.t - t0 for p in points] + [run.end - t0]
    last = run.monitor.last or points[-1]
    ax.step(times, [p.zombies for p in points] + [last.zombies], where="post", color="tab:red",
            label="zombies")  # fmt: skip
    ax.step(times, [p.live for p in points] + [last.live], where="post", color="tab:blue",
            label="live children", alpha=0.7)  # fmt: skip
    ax.axvspan(run.load_end - t0, run.end - t0, color="grey", alpha=0.2, label="settle window")
    if run.leaked:
        ax.plot([run.end - t0], [run.leaked_count], marker="X", markersize=10, color="black",
                linestyle="none", label=f"{run.leaked_count} leaked")  # fmt: skip
    verdict = run.verdict.upper()
    expected = f" (expected {run.expected.upper()})" if run.expected else ""
    color = "tab:green" if run.verdict == PASS else "tab:red"
    ax.set_title(f"{run.mode}: {verdict}{expected}", loc="left", color=color, fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel("processes")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7)


def _lifetimes(ax: Any, run: RunResult) -> None:
    lifetimes = [seconds * 1000 for seconds in run.monitor.lifetimes]
    interval = run.monitor.interval * 1000
    if lifetimes:
        ax.hist(lifetimes, bins=30, color="tab:orange")
        ax.axvline(interval, color="grey", linestyle="--", label=f"interval {interval:g} ms")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no zombie was collected\nwhile watched", ha="center", va="center",
                transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("zombie lifetime (ms)", loc="left", fontsize=10)
    ax.set_xlabel("ms")


def plot(report: Report, path: str) -> None:
    """Write the report's runs as a PNG at ``path``; raise ZombiewatchError if it cannot."""
    with writing(path):
        _draw(report, path)


def _draw(report: Report, path: str) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    runs = report.runs
    fig, axes = plt.subplots(
        max(1, len(runs)), 2, figsize=(12, 2.8 * max(1, len(runs))), squeeze=False,
        gridspec_kw={"width_ratios": [3, 1]}, layout="constrained",
    )  # fmt: skip
    for row, run in zip(axes, runs, strict=False):
        _timeline(row[0], run)
        _lifetimes(row[1], run)
    fig.suptitle("zombiewatch: zombies and live children over time", fontsize=12)
    fig.savefig(path, dpi=90)
    plt.close(fig)
