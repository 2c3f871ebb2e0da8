"""--junit-xml: the file CI systems read, validated against the JUnit schema."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import PYTHON, zombiewatch
from zombiewatch import modes

xmlschema = pytest.importorskip("xmlschema", reason="pip install xmlschema (in the test extra)")

pytestmark = pytest.mark.e2e

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "junit.xsd"


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(SCHEMA))


def test_the_schema_rejects_what_ci_tools_would(schema) -> None:
    # A validation that cannot fail proves nothing: a testcase without a
    # name, and a testsuite without a test count, are refused.
    assert not schema.is_valid(
        "<testsuites><testsuite name='s' tests='1'><testcase/></testsuite></testsuites>"
    )
    assert not schema.is_valid("<testsuites><testsuite name='s'/></testsuites>")


def test_all_modes_one_testcase_each(schema, tmp_path: Path) -> None:
    out = tmp_path / "zombiewatch.xml"
    proc = zombiewatch(
        "--mode", "all", "--connections", "40", "--settle", "2", "--junit-xml", str(out)
    )
    assert proc.returncode == 1  # none, poll and sigchld-once leak

    schema.validate(str(out))
    cases = {case.get("name"): case for case in ET.parse(out).iter("testcase")}
    assert set(cases) == set(modes.names())
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {name for name in modes.names() if modes.get(name).expected == "fail"}
    failure = cases["none"].find("failure")
    assert failure is not None
    # Every connection left a zombie; one born in the last moments of a
    # busy run may still be inside the settle window, not yet leaked.
    leaked = int(failure.get("message", "").removesuffix(" zombie(s) leaked"))
    assert 30 <= leaked <= 40, failure.get("message")
    assert "leaked zombie pid " in (failure.text or "")
    assert "zombiewatch server, mode none" in (failure.text or "")  # the parent, named


def test_check_turns_expected_leaks_into_passes(schema, tmp_path: Path) -> None:
    out = tmp_path / "check.xml"
    args = ["--mode", "all", "--check", "--connections", "40", "--settle", "2"]
    proc = zombiewatch(*args, "--junit-xml", str(out))
    assert proc.returncode == 0
    schema.validate(str(out))
    root = ET.parse(out).getroot()
    assert root.get("failures") == "0"
    assert root.get("tests") == str(len(modes.names()))


def test_run_and_watch_write_one_testcase(schema, tmp_path: Path) -> None:
    leaker = "import os,time\nfor _ in range(3):\n if os.fork()==0: os._exit(0)\ntime.sleep(30)"
    out = tmp_path / "run.xml"
    proc = zombiewatch(
        "run", "--max-zombies", "3", "--duration", "60", "--settle", "0.1",
        "--junit-xml", str(out), "--",
        PYTHON, "-c", leaker,
    )  # fmt: skip
    assert proc.returncode == 1
    schema.validate(str(out))
    [case] = ET.parse(out).iter("testcase")
    assert case.get("classname") == "zombiewatch.run"
    assert case.find("failure") is not None

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        out = tmp_path / "watch.xml"
        proc = zombiewatch(
            "watch", str(sleeper.pid), "--duration", "0.2", "--settle", "0", "--junit-xml", str(out)
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 0
    schema.validate(str(out))
    [case] = ET.parse(out).iter("testcase")
    assert case.get("name") == f"pid {sleeper.pid}"
    assert case.find("failure") is None


def test_unwritable_junit_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = zombiewatch("--junit-xml", str(tmp_path / "no" / "such" / "dir.xml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
