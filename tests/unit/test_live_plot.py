"""The --live screen and the plot's figure, from scripted results (#20)."""

from __future__ import annotations

import io

import pytest

from tests.unit.test_report import run
from zombiewatch import live, runner
from zombiewatch.live import DONE, LOAD, SETTLE, WATCH, Phase, frame, render_live
from zombiewatch.monitor import MonitorStats, Sample, Zombie
from zombiewatch.report import Report

TITLE = "zombiewatch server, mode sigchld"


def _stats() -> MonitorStats:
    stats = MonitorStats(peak_zombies=4, max_live_children=9, zombies_seen=12)
    stats.last = Sample(10.0, 3, 2)
    return stats


def _screen(phase: Phase, title: str = TITLE, width: int = 80) -> list[str]:
    zombie = Zombie(pid=5, ppid=4, name="x", since=8.5)
    return render_live(title, phase, _stats(), [zombie], 3.2, width).split("\n")


def test_the_screen_has_a_short_title_the_phase_and_connections_done():
    lines = _screen(Phase(LOAD, done=412, connections=1000))
    assert lines[:3] == [TITLE, "phase          load", "connections    412 of 1000 done"]
    assert "zombies now           2   (peak 4, seen 12)" in lines
    assert "oldest zombie      1.50 s" in lines


@pytest.mark.parametrize(
    ("phase", "line"),
    [
        (Phase(WATCH), "phase          watch"),
        (Phase(SETTLE, settle_left=1.26, settle=2), "phase          settle, 1.3 of 2 s left"),
        (Phase(DONE), "phase          done, stopping what the run started"),
    ],
)
def test_each_phase_is_said(phase, line):
    lines = _screen(phase)
    assert lines[1] == line
    assert not any(x.startswith("connections") for x in lines)  # no flood: no count


def test_every_line_is_cut_to_the_terminal_width():
    lines = _screen(Phase(LOAD, done=1, connections=2), title="x" * 200, width=30)
    assert lines[0] == "x" * 27 + "..."
    assert max(len(line) for line in lines) <= 30


def test_a_frame_overwrites_the_last_one_without_clearing_the_screen():
    text = frame("a\nb")
    assert text == "\x1b[Ha\x1b[K\r\nb\x1b[K\r\n\x1b[J"
    assert "\x1b[2J" not in text  # erase-display flickers; each line erases its own end


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_the_alternate_screen_is_left_however_the_run_ends(capsys, error):
    with pytest.raises(error), runner.live_screen(runner.RunOptions(live=True)):
        raise error
    out = capsys.readouterr().out
    assert out == live.ENTER_SCREEN + live.LEAVE_SCREEN
    assert out.startswith("\x1b[?1049h")  # smcup
    assert out.endswith("\x1b[?1049l")  # rmcup


def test_no_alternate_screen_without_live(capsys):
    with runner.live_screen(runner.RunOptions(live=False)):
        pass
    assert capsys.readouterr().out == ""


# -- the plot --------------------------------------------------------------------


def _plotted_run():
    r = run(mode="wait", expected="pass")
    for i, (live_, zombies) in enumerate([(0, 0), (1, 0), (0, 1), (1, 0), (0, 0)]):
        r.monitor.timeline.append(Sample(1.0 + i * 0.01, live_, zombies))
    r.load_end, r.end = 1.04, 1.1
    return r


def test_the_figure_has_whole_process_counts_steps_and_ms_once():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from zombiewatch.plot import figure

    fig = figure(Report([_plotted_run()]))
    fig.draw_without_rendering()  # lays out the ticks
    timeline, lifetimes = fig.axes
    assert all(float(t).is_integer() for t in timeline.get_yticks())
    [zombies] = [line for line in timeline.get_lines() if line.get_label() == "zombies"]
    assert zombies.get_drawstyle() == "steps-post"
    assert timeline.get_ylabel() == "processes"
    assert lifetimes.get_xlabel() == "lifetime (ms)"
    assert lifetimes.get_ylabel() == "zombies"
    assert all(float(t).is_integer() for t in lifetimes.get_yticks())
    texts = [lifetimes.get_title(loc="left"), lifetimes.get_xlabel(), lifetimes.get_ylabel()]
    texts += [t.get_text() for t in lifetimes.get_xticklabels() + lifetimes.get_yticklabels()]
    legend = lifetimes.get_legend()
    texts += [t.get_text() for t in legend.get_texts()] if legend else []
    assert sum(text.count("ms") for text in texts) == 1


@pytest.mark.parametrize("name", ["a.svg", "b.PDF", "c.png"])
def test_any_format_matplotlib_writes_is_accepted(name):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from zombiewatch.plot import image_format

    assert image_format(f"/tmp/{name}") == name.rsplit(".", 1)[1].lower()


@pytest.mark.parametrize(
    ("name", "says"), [("x.txt", ".txt is no image format"), ("x", "it has no extension")]
)
def test_a_name_without_an_image_extension_is_refused(name, says):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from zombiewatch.plot import image_format

    with pytest.raises(ValueError, match=says) as err:
        image_format(name)
    assert ".svg" in str(err.value)


def test_a_figure_writes_as_svg():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from zombiewatch.plot import figure

    out = io.BytesIO()
    figure(Report([_plotted_run()])).savefig(out, format="svg")
    assert b"<svg" in out.getvalue()
