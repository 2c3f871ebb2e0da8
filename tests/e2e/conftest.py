"""Fixtures of the e2e tests: a wheel of this checkout, built once per
session, and a fresh venv with it installed (#20)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.installs import ROOT, make_venv, run_or_skip
from tests.helpers import PYTHON


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout built as a wheel by its build backend (.ci/run builds
    it with `python -m build`, which is in the dev extra; pip is everywhere)."""
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy: setuptools builds in the source tree (build/,
    # *.egg-info), where two test workers building at once would collide.
    source = tmp_path_factory.mktemp("source") / "zombiewatch"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".*_cache"
        ),
    )
    run_or_skip(
        [PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(source)],
        "build the wheel",
        cwd=out,
    )
    [built] = out.glob("zombiewatch-*.whl")
    return built


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv with the wheel (and pytest, for the plugin) installed; its bin directory."""
    return make_venv(tmp_path_factory.mktemp("venv") / "venv", str(wheel), "pytest")
