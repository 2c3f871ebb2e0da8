"""The install paths the README documents, each installed into a fresh venv
and run from there, not from this checkout (#20)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.installs import ROOT, clean_env, make_venv
from zombiewatch import _feeds

pytestmark = pytest.mark.e2e

LEAKY_TEST = """
import subprocess

KEPT = []  # a Popen left to the garbage collector would be reaped by its __del__

def test_leaks_a_zombie():
    KEPT.append(subprocess.Popen(["true"]))  # never waited for

def test_collects_its_child():
    subprocess.run(["true"], check=True)
"""


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,  # not the checkout, whose zombiewatch/ python -m would import
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def test_the_wheel_ships_the_scripts_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in whl.infolist()}
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = whl.read(metadata).decode()
    for script in ("ci-zero-zombies.sh", "flood.sh"):
        assert modes[f"zombiewatch/scripts/{script}"] & 0o111, f"{script} is not executable"
    assert "zombiewatch/scripts/zombiewatch-command.sh" in names
    assert "zombiewatch/schema/run.schema.json" in names  # the JSON format (#20)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as whl:
        points = whl.read(entry_points).decode()
    assert "zombiewatch = zombiewatch.__main__:main" in points
    assert "[pytest11]" in points
    # The native event reader, compiled where a compiler is found (#14).
    if shutil.which(sysconfig.get_config_var("CC").split()[0]):
        assert any(n.startswith("zombiewatch/_pump.") and n.endswith(".so") for n in names)
        assert "zombiewatch/_pump.pyi" in names
        assert "zombiewatch/_pump.c" not in names


def test_the_console_script_from_the_wheel_measures(wheel_venv: Path, tmp_path: Path) -> None:
    zw = str(wheel_venv / "zombiewatch")
    imported = "import zombiewatch; print(zombiewatch.__file__)"
    where = _run([str(wheel_venv / "python"), "-c", imported], tmp_path)
    assert where.stdout.startswith(str(wheel_venv.parent)), where.stdout  # the venv's, not ours
    proc = _run([zw, "--mode", "sigchld", "--connections", "50", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Its JSON is what the schema it ships says.
    schema = Path(where.stdout.strip()).parent / "schema" / "run.schema.json"
    jsonschema.validate(json.loads(proc.stdout), json.loads(schema.read_text()))
    [run] = json.loads(proc.stdout)["runs"]
    assert run["ok"] == 50
    assert run["leaked"] == 0
    if run["observe"]["method"] == "events" and _feeds.native_reason() is None:
        # Built here with the extension, so the installed wheel has it too.
        assert run["observe"]["reader"] == "native"


def test_the_scripts_from_the_wheel_run(wheel_venv: Path, tmp_path: Path) -> None:
    zw = str(wheel_venv / "zombiewatch")
    shipped = Path(_run([zw, "scripts", "--path"], tmp_path).stdout.strip())
    assert shipped.is_relative_to(wheel_venv.parent)
    assert os.access(shipped / "flood.sh", os.X_OK)
    written = _run([zw, "scripts", "--write", "ci"], tmp_path)
    assert written.returncode == 0, written.stderr
    # The copies run: the gate finds this zombiewatch on PATH and checks the
    # built-in modes with a short flood.
    env = clean_env(PATH=f"{wheel_venv}{os.pathsep}/usr/bin:/bin", CONNECTIONS="30")
    gate = subprocess.run(
        ["ci/ci-zero-zombies.sh"], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "check: every mode met its expected verdict" in gate.stdout


def test_the_plugin_from_the_wheel_fails_a_leaking_test(wheel_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "test_leak.py").write_text(LEAKY_TEST)
    proc = _run(
        [str(wheel_venv / "python"), "-m", "pytest", "-p", "no:cacheprovider", "--zombiewatch",
         "test_leak.py"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ERROR at teardown of test_leaks_a_zombie" in proc.stdout
    assert "zombiewatch: this test left 1 zombie process" in proc.stdout
    assert "2 passed, 1 error" in proc.stdout  # the error is the leak, at teardown
    assert "zombiewatch: 2 tests guarded, 1 test leaked 1 zombie" in proc.stdout


def test_install_from_a_git_url(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist): nothing to install from a git URL")
    # pip clones the committed HEAD of this checkout, as it would a remote.
    bin_dir = make_venv(tmp_path / "venv", f"git+file://{ROOT}")
    proc = _run([str(bin_dir / "zombiewatch"), "modes", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sigchld" in [mode["name"] for mode in json.loads(proc.stdout)["modes"]]
    shipped = _run([str(bin_dir / "zombiewatch"), "scripts", "--path"], tmp_path).stdout.strip()
    assert (Path(shipped) / "ci-zero-zombies.sh").is_file()
