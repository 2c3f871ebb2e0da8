"""--plot FILE.png: the picture, and the message when matplotlib is missing."""

from __future__ import annotations

import struct
import subprocess
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
