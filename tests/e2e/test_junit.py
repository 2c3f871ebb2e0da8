"""--junit-xml: the file CI systems read, validated against the JUnit schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.test_run_watch import free_port
from tests.helpers import PYTHON, zombiewatch
from zombiewatch import modes
from zombiewatch.junit import MAX_LISTED

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
    # The parent, named, once for all the zombies it left.
    assert (failure.text or "").count("zombiewatch server, mode none") == 1


def test_check_turns_expected_leaks_into_passes(schema, tmp_path: Path) -> None:
    out = tmp_path / "check.xml"
    args = ["--mode", "all", "--check", "--connections", "40", "--settle", "2"]
    proc = zombiewatch(*args, "--junit-xml", str(out))
    assert proc.returncode == 0
    schema.validate(str(out))
    root = ET.parse(out).getroot()
    assert root.get("failures") == "0"
    assert root.get("tests") == str(len(modes.names()))


def test_check_says_what_held_when_a_leaking_mode_passed(schema, tmp_path: Path) -> None:
    # --max-leaked 100000 lets `none` pass its rules, and so miss its
    # expected FAIL: the failure says so, with the count and the limit,
    # not a bare "verdict PASS, expected FAIL" (#20).
    out = tmp_path / "check.xml"
    proc = zombiewatch(
        "--mode", "none", "--check", "--max-leaked", "100000", "--connections", "80",
        "--settle", "1", "--json", "--junit-xml", str(out),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    leaked = json.loads(proc.stdout)["runs"][0]["leaked"]
    assert leaked > MAX_LISTED, leaked  # a few may be younger than the window: not leaked
    schema.validate(str(out))
    [case] = ET.parse(out).iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("mode none is expected to FAIL (it leaks by design), but"), message
    assert (
        f"leaked: {leaked} zombie(s) outlived the 1 s settle window, within --max-leaked 100000"
        in message
    )
    body = failure.text or ""
    assert body.count("zombiewatch server, mode none") == 1  # one parent, named once
    assert body.count("\n  leaked zombie pid ") == MAX_LISTED
    assert f"  ... and {leaked - MAX_LISTED} more of this parent" in body


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
    # Named after the program, not its whole command line.
    assert case.get("name") == f"{os.path.basename(PYTHON)} -c"
    assert case.find("failure") is not None

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        out = tmp_path / "watch.xml"
        proc = zombiewatch(
            "watch", str(sleeper.pid), "--duration", "0.2", "--settle", "0", "--junit-xml", str(out)
        )
        named = tmp_path / "named.xml"
        renamed = zombiewatch(
            "watch", str(sleeper.pid), "--duration", "0.2", "--settle", "0",
            "--name", "nightly sleeper", "--junit-xml", str(named),
        )  # fmt: skip
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 0
    schema.validate(str(out))
    [case] = ET.parse(out).iter("testcase")
    assert case.get("name") == "sleep"  # the program, not its pid: the same next time
    assert case.find("failure") is None
    assert renamed.returncode == 0, renamed.stderr
    [case] = ET.parse(named).iter("testcase")
    assert case.get("name") == "nightly sleeper"


def test_a_run_keeps_its_testcase_name_on_another_port(schema, tmp_path: Path) -> None:
    server = str(Path(__file__).resolve().parent / "servers" / "forking_server.py")
    names = []
    for i in range(2):
        port = free_port()
        out = tmp_path / f"run{i}.xml"
        proc = zombiewatch(
            "run", "--flood", str(port), "--connections", "20", "--settle", "0.5",
            "--junit-xml", str(out), "--", PYTHON, server, str(port), "0.05",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        schema.validate(str(out))
        [case] = ET.parse(out).iter("testcase")
        names.append(case.get("name", ""))
        assert str(port) not in names[-1]
    assert names == [f"{os.path.basename(PYTHON)} forking_server.py"] * 2


def test_unwritable_junit_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = zombiewatch("--junit-xml", str(tmp_path / "no" / "such" / "dir.xml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="creating PID namespaces needs root")
@pytest.mark.skipif(shutil.which("tini") is None, reason="tini is not installed")
def test_compare_init_names_each_testcase_by_its_init(schema, tmp_path: Path) -> None:
    out = tmp_path / "pid1.xml"
    proc = zombiewatch(
        "run", "--pid1", "--compare-init", "tini", "--stop-timeout", "1", "--duration", "0.3",
        "--settle", "0", "--name", "sleeper", "--junit-xml", str(out), "--", "sleep", "30",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # sleep as PID 1 ignores SIGTERM
    schema.validate(str(out))
    names = [case.get("name") for case in ET.parse(out).iter("testcase")]
    assert names == ["sleeper", "sleeper under tini"]
