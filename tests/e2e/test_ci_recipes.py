"""The recipes of docs/ci.md, run as written (#20).

Each recipe's YAML is parsed (PyYAML, in the test extra) and its run
steps are executed in order, as the CI system would run them, in a
project that holds what the recipes assume of a user's: a `./my-server`
(here the built-in server, in the mode MY_SERVER_MODE says) and a test.
Only what the page says to set is set: ZOMBIEWATCH_FROM (a wheel of this
checkout, as a user keeps one), SERVER_PORT (a free port) and CONNECTIONS.
"""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.installs import ROOT, clean_env
from tests.e2e.test_run_watch import free_port

yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the test extra)")

pytestmark = pytest.mark.e2e

CI_MD = ROOT / "docs" / "ci.md"

MY_SERVER = """#!/bin/sh
# The user's server: here zombiewatch's own, leaking or not as asked.
exec zombiewatch serve --mode "${MY_SERVER_MODE:-sigchld}" "$@"
"""
MY_TEST = """
import subprocess

def test_runs_a_child_and_collects_it():
    assert subprocess.run(["true"]).returncode == 0
"""


def recipe(heading: str, language: str) -> str:
    """The first ```LANGUAGE block under the ``## HEADING`` of docs/ci.md."""
    text = CI_MD.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block under '## {heading}'"
    return match.group(1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    server = tmp_path / "my-server"
    server.write_text(MY_SERVER)
    server.chmod(0o755)
    (tmp_path / "test_app.py").write_text(MY_TEST)
    return tmp_path


def _env(wheel: Path, wheel_venv: Path, declared: dict[str, Any], **extra: str) -> dict[str, str]:
    """The recipe's own variables, then what the page says to set."""
    env = clean_env(PATH=f"{wheel_venv}{os.pathsep}/usr/bin:/bin")
    env.update({name: str(value) for name, value in declared.items()})
    env.update(ZOMBIEWATCH_FROM=str(wheel), SERVER_PORT=str(free_port()), CONNECTIONS="40")
    env.update(extra)
    return env


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # As GitHub runs `run:` and GitLab a job's script: bash, stopping at the first failure.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _junit_failures(path: Path) -> int:
    root = ET.parse(path).getroot()
    assert root.tag in ("testsuites", "testsuite")
    assert next(root.iter("testcase"), None) is not None, f"{path.name} has no testcase"
    return len(list(root.iter("failure"))) + len(list(root.iter("error")))


def _github_job() -> dict[str, Any]:
    workflow = yaml.safe_load(recipe("GitHub Actions", "yaml"))
    [job] = workflow["jobs"].values()
    assert workflow["permissions"]["checks"] == "write"  # the report action makes a check run
    return dict(job)


def _run_github(job: dict[str, Any], cwd: Path, env: dict[str, str]):
    """Run the job's `run:` steps until one fails; return (failed step, its result)."""
    for step in job["steps"]:
        if "run" not in step:
            continue
        proc = _bash(step["run"], cwd, env)
        if proc.returncode != 0:
            return step, proc
    return None, None


def test_github_actions_recipe(project: Path, wheel: Path, wheel_venv: Path) -> None:
    job = _github_job()
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    assert uses == [
        "actions/checkout@v5",
        "actions/setup-python@v6",
        "mikepenz/action-junit-report@v6",
    ]
    report = job["steps"][-1]
    assert report["if"] in ("${{ !cancelled() }}", "always()")  # also after a failed gate
    failed, proc = _run_github(job, project, _env(wheel, wheel_venv, job["env"]))
    assert failed is None, f"{failed['name']}: {proc.stdout}{proc.stderr}"
    # The report action's glob finds both files, and neither has a failure.
    found = sorted(p.name for p in project.glob(report["with"]["report_paths"]))
    assert found == ["pytest.xml", "zombiewatch.xml"]
    assert _junit_failures(project / "zombiewatch.xml") == 0
    assert _junit_failures(project / "pytest.xml") == 0


def test_github_actions_recipe_fails_on_a_leaking_server(
    project: Path, wheel: Path, wheel_venv: Path
) -> None:
    job = _github_job()
    env = _env(wheel, wheel_venv, job["env"], MY_SERVER_MODE="none")
    failed, proc = _run_github(job, project, env)
    assert failed is not None
    assert failed["name"] == "No zombies from the server under load"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed the zero-zombie gate (exit 1)" in proc.stderr
    assert _junit_failures(project / "zombiewatch.xml") == 1


def test_gitlab_ci_recipe(project: Path, wheel: Path, wheel_venv: Path) -> None:
    [job] = yaml.safe_load(recipe("GitLab CI", "yaml")).values()
    assert job["artifacts"]["when"] == "always"
    proc = _bash("\n".join(job["script"]), project, _env(wheel, wheel_venv, job["variables"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = job["artifacts"]["reports"]["junit"]
    assert reports == ["zombiewatch.xml", "pytest.xml"]
    for name in reports:
        assert _junit_failures(project / name) == 0


def test_plain_shell_recipe(project: Path, wheel: Path, wheel_venv: Path) -> None:
    script = project / "ci.sh"
    script.write_text(recipe("A plain shell job", "sh"))
    # Its own venv: python3 on PATH is any Python 3.10+ (here the test venv's).
    proc = subprocess.run(
        ["bash", str(script)], cwd=project, env=_env(wheel, wheel_venv, {}),
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / ".venv-zombiewatch" / "bin" / "zombiewatch").exists()
    assert _junit_failures(project / "zombiewatch.xml") == 0
    assert _junit_failures(project / "pytest.xml") == 0


def test_the_one_command_recipe(project: Path, wheel: Path, wheel_venv: Path) -> None:
    command = recipe("Without the gate script", "sh").strip()
    proc = _bash(command, project, _env(wheel, wheel_venv, {}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _junit_failures(project / "zombiewatch.xml") == 0
