"""Building this checkout and installing it into fresh venvs, as a user
would from the README's install paths (#20).

Building needs setuptools and installing needs psutil, click and pytest,
from pip's cache or a package index; where neither has them (offline, no
cache) the tests that need them skip with pip's reason.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600.0  # seconds for one build or install on a busy machine

# What pip and build print when a package cannot be fetched: a reason to
# skip (the machine is offline), not a failure of the project.
_OFFLINE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of this test run's Python
    settings, so the venv under test finds only what is installed in it."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "COV_"))
    }
    env.update(extra)
    return env


def run_or_skip(args: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a build or install step; skip the test if it failed for want of a
    package it could not fetch, fail it for any other reason."""
    kwargs.setdefault("env", clean_env())
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        stdin=subprocess.DEVNULL,
        **kwargs,  # type: ignore[call-overload]
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if any(sign in output for sign in _OFFLINE):
            reason = next(line for line in output.splitlines() if any(s in line for s in _OFFLINE))
            pytest.skip(f"cannot {what}: a dependency cannot be fetched ({reason.strip()})")
        raise AssertionError(f"{what} failed (exit {proc.returncode}):\n{output}")
    return proc


def make_venv(where: Path, *requirements: str) -> Path:
    """A fresh venv at ``where`` with ``requirements`` installed; its bin directory."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    bin_dir = where / "bin"
    if requirements:
        run_or_skip(
            [str(bin_dir / "python"), "-m", "pip", "install", "-q", *requirements],
            f"install {' '.join(requirements)} in a fresh venv",
            cwd=where,
        )
    return bin_dir
