"""--plot FILE: the picture (PNG, SVG, ...), and the messages when it cannot be drawn."""

from __future__ import annotations

import json
import struct
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import PYTHON, zombiewatch

pytestmark = pytest.mark.e2e


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_plot_draws_one_row_per_mode(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    args = ["--connections", "40", "--settle", "0.2"]
    assert zombiewatch("--mode", "none", *args, "--plot", str(one)).returncode == 1
    run = zombiewatch("run", "--duration", "0.3", "--settle", "0", "--plot", str(two), "--", "true")
    assert run.returncode == 0
    width, height = _png_size(one)
    assert (width, height) == _png_size(two)  # one row each
    assert width > 2 * height


def test_plot_without_matplotlib_is_a_usage_error(tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import matplotlib` fail, as it does
    # where the extra is not installed.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from zombiewatch.cli import main\n"
        f"main(['--plot', {str(tmp_path / 'x.png')!r}])"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--plot needs matplotlib: pip install matplotlib" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_svg_and_png_of_a_real_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    svg, png = tmp_path / "wait.svg", tmp_path / "wait.png"
    args = ["--mode", "wait", "--connections", "60", "--settle", "0.3"]
    for out in (svg, png):
        proc = zombiewatch(*args, "--plot", str(out))
        assert proc.returncode == 0, proc.stderr
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width", "0pt").removesuffix("pt")) > 2 * float(
        root.get("height", "0pt").removesuffix("pt")
    )
    width, height = _png_size(png)
    assert width > 2 * height


# The figure of a real run of mode wait (one child at a time: counts that
# flip between 0 and 1), built in a process of its own and read back as
# matplotlib objects.
FIGURE = textwrap.dedent(
    """
    import json
    from zombiewatch import runner
    from zombiewatch.plot import figure

    report = runner.run(["wait"], runner.RunOptions(connections=60, settle=0.3))
    fig = figure(report)
    fig.draw_without_rendering()
    timeline, lifetimes = fig.axes
    texts = [lifetimes.get_title(loc="left"), lifetimes.get_xlabel(), lifetimes.get_ylabel()]
    texts += [t.get_text() for t in lifetimes.get_xticklabels() + lifetimes.get_yticklabels()]
    if lifetimes.get_legend():
        texts += [t.get_text() for t in lifetimes.get_legend().get_texts()]
    print(json.dumps({
        "max_live": report.runs[0].monitor.max_live_children,
        "yticks": [float(t) for t in timeline.get_yticks()],
        "lines": {line.get_label(): line.get_drawstyle() for line in timeline.get_lines()},
        "areas": [area.get_label() for area in timeline.collections],
        "labels": [timeline.get_ylabel(), lifetimes.get_xlabel(), lifetimes.get_ylabel()],
        "hist_yticks": [float(t) for t in lifetimes.get_yticks()],
        "texts": texts,
    }))
    """
)


def test_the_figure_of_a_wait_run_reads_in_whole_processes() -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    proc = subprocess.run([PYTHON, "-c", FIGURE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fig = json.loads(proc.stdout)
    assert fig["max_live"] <= 1  # wait: one child at a time
    assert all(tick.is_integer() for tick in fig["yticks"]), fig["yticks"]
    assert fig["lines"]["zombies"] == "steps-post"
    assert "live children" in fig["areas"]  # an area under the zombies' line
    assert fig["labels"] == ["processes", "lifetime (ms)", "zombies"]
    assert all(tick.is_integer() for tick in fig["hist_yticks"]), fig["hist_yticks"]
    assert sum(text.count("ms") for text in fig["texts"]) == 1, fig["texts"]


@pytest.mark.parametrize("name", ["report.txt", "report"])
def test_a_name_that_is_no_image_is_refused_before_the_run(tmp_path: Path, name: str) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    proc = zombiewatch("--mode", "none", "--plot", str(tmp_path / name))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "use one of " in proc.stderr
    assert ".svg" in proc.stderr
    assert "server pid" not in proc.stderr  # refused before anything started
    assert not (tmp_path / name).exists()
