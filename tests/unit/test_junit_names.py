"""JUnit's failure text and testcase names, from scripted results (#20)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.unit.test_report import run
from zombiewatch._names import program_name, server_title
from zombiewatch.junit import MAX_LISTED, to_junit
from zombiewatch.monitor import Parent, Zombie
from zombiewatch.report import Report

SERVER = ["/usr/bin/python3", "-m", "zombiewatch.server", '{"mode": "none", "port": 0}']


def _case(report: Report) -> ET.Element:
    case = ET.fromstring(to_junit(report)).find("testsuite/testcase")
    assert case is not None
    return case


def _failure(report: Report) -> ET.Element:
    failure = _case(report).find("failure")
    assert failure is not None
    return failure


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["./my-server", "--port", "8080"], "my-server"),
        (["/opt/app/bin/gunicorn", "-b", ":9000", "app:wsgi"], "gunicorn"),
        (["python3", "server.py", "8080"], "python3 server.py"),
        (["/usr/bin/python3.11", "-u", "/tmp/x/srv.py", "--port=1"], "python3.11 srv.py"),
        (["python3", "-m", "http.server", "8000"], "python3 -m http.server"),
        (["python3", "-c", "import os; os.fork()"], "python3 -c"),
        (["node"], "node"),
        (["sh", "-c", "exec ./x 8080"], "sh -c"),
        ([], "?"),
    ],
)
def test_a_program_is_named_without_its_arguments(argv, name):
    assert program_name(argv) == name


def test_the_built_in_server_has_a_name_for_people():
    assert server_title("sigchld") == "zombiewatch server, mode sigchld"


def test_a_run_is_a_testcase_named_by_its_name_not_its_command_line():
    r = run(mode="./srv --port 41234", expected=None, name="srv")
    assert _case(Report([r])).get("name") == "srv"
    # Modes keep their names.
    assert _case(Report([run(mode="sigchld")])).get("name") == "sigchld"


def test_a_fail_mode_that_passed_under_check_says_what_held():
    r = run(mode="none", expected="fail", leaked=38, max_leaked=100_000, grace=5.0,
            max_zombies=1000, max_age=1.25)  # fmt: skip
    failure = _failure(Report([r], check=True))
    message = failure.get("message", "")
    assert "verdict PASS, expected FAIL" not in message
    assert message.startswith("mode none is expected to FAIL (it leaks by design)")
    assert "leaked: 38 zombie(s) outlived the 1 s settle window, within --max-leaked 100000" in (
        message
    )
    assert "grace: the oldest zombie stayed one for 1.25 s, within --grace 5" in message
    assert "max-zombies: at most 3 zombies at once, under --max-zombies 1000" in message
    body = failure.text or ""
    assert body.startswith("expected: FAIL, summary of none\nheld: leaked: 38")


def test_a_pass_mode_that_leaked_under_check_names_the_rule():
    r = run(mode="sigchld", expected="pass", leaked=2)
    message = _failure(Report([r], check=True)).get("message", "")
    assert message == (
        "mode sigchld is expected to PASS, but a zombie rule failed: leaked: 2 zombie(s)"
        " outlived the 1 s settle window (--max-leaked 0)"
    )


def test_each_parent_command_line_is_said_once():
    r = run(leaked=0)
    r.leaked = [Zombie(pid=2000 + i, ppid=999, name="python3", since=1.0) for i in range(3)]
    r.leaked.append(Zombie(pid=3000, ppid=777, name="worker", since=1.0))
    r.monitor.parents = {
        999: Parent(999, "python3", SERVER, zombies_seen=3),
        777: Parent(777, "srv", ["srv", "--log", "/tmp/a b"], zombies_seen=1),
    }
    body = _failure(Report([r])).text or ""
    lines = body.splitlines()
    # The biggest holder first: the built-in server by its name, another
    # command line quoted as a shell would.
    i = lines.index("parent pid 999, 3 leaked zombie(s), command: zombiewatch server, mode none")
    assert lines[i + 1] == "  leaked zombie pid 2000 (python3), parent 999, zombie for 500 ms"
    assert "parent pid 777, 1 leaked zombie(s), command: srv --log '/tmp/a b'" in lines
    assert body.count("zombiewatch server, mode none") == 1
    assert sum(line.startswith("  leaked zombie ") for line in lines) == 4


def test_at_most_max_listed_zombies_are_spelled_out():
    r = run(mode="none", expected="fail", leaked=MAX_LISTED + 7)
    r.leaked_unlisted = 3  # the helper's zombies all have parent 999, not named
    body = _failure(Report([r])).text or ""
    assert body.count("\n  leaked zombie ") == MAX_LISTED
    assert "  ... and 7 more of this parent" in body
    assert body.endswith("... and 3 more, counted but not listed")
