"""Each leak is blamed on the test or fixture that started the process, never
on a bystander; escaped orphans and the garbage collector (#17).

Each case runs a generated test file in a fresh pytest process
(``runpytest_subprocess``): the zombies are that process's children.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.plugin.conftest import MIDDLE, PRELUDE, error_text, observe_by, pids

pytest_plugins = ["pytester"]


def make_tests(pytester, body: str) -> None:
    pytester.makepyfile(test_inner=PRELUDE + textwrap.dedent(body))


def summary_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("zombiewatch: ")]


def assert_summary_names(result: pytest.RunResult, who: str, when: str) -> None:
    """A summary line begins ``zombiewatch: WHO`` and says WHEN, then where
    the process was started."""
    assert any(
        line.startswith(f"zombiewatch: {who}") and f"{when}; started at test_inner.py:" in line
        for line in summary_lines(result)
    ), result.outlines


# -- a bystander is never blamed -----------------------------------------------------

BYSTANDER = """
def test_c():
    p = subprocess.Popen(UNTIL_EOF, stdin=subprocess.PIPE)
    KEEP.append(p)
    record("child", p.pid)
    record("kill-at-exit", p.pid)

def test_d():
    # C's child exits now, while D runs, and nobody collects it.
    p = KEEP[0]
    p.stdin.close()
    exited(p.pid)
"""


@pytest.mark.parametrize(("xdist", "how"), [(False, "events"), (True, "events"), (False, "sample")])
def test_a_zombie_is_blamed_on_the_test_that_started_it(pytester, run, xdist, how) -> None:
    observe_by(pytester, how)
    make_tests(pytester, BYSTANDER)
    args = ["-n", "1"] if xdist else []

    result = run("--zombiewatch", "--zombiewatch-settle=0.2", *args)

    # D passes: the zombie is C's, who left its child running.
    result.assert_outcomes(passed=2)
    assert "ERROR at teardown" not in result.stdout.str()
    [pid] = pids(pytester, "child")
    out = result.stdout.str()
    # A warning at C's end, with C's node id ...
    assert re.search(
        r"test_inner.py::test_c\n.*ZombiewatchWarning: zombiewatch: left pid " + str(pid), out
    ), out
    # ... and the leak in the summary, against C, and the run fails.
    lines = summary_lines(result)
    assert "zombiewatch: 2 tests guarded, 1 test leaked 1 zombie" in lines
    assert any(
        line.startswith(f"zombiewatch: test_inner.py::test_c leaked pid {pid} 'python")
        and (
            "which ran on after it and was never collected: its zombie was found "
            "during test_inner.py::test_d; started at test_inner.py:"
        )
        in line
        for line in lines
    ), lines
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# What is left when the tests are done: C's child exited during an
# unguarded D and was never collected (a leak), or it still runs (named).
AT_THE_END = {
    "zombie": (
        BYSTANDER.replace("def test_d", "@pytest.mark.zombiewatch(enabled=False)\ndef test_d"),
        "leaked",
        "found when the session's tests were done",
        "1 test guarded, 1 test leaked 1 zombie",
        pytest.ExitCode.TESTS_FAILED,
    ),
    "running": (
        BYSTANDER.split("def test_d")[0],
        "left",
        "running when the session's tests were done",
        "1 test guarded, no test leaked a zombie",
        pytest.ExitCode.OK,
    ),
}


@pytest.mark.parametrize("xdist", [False, True])
@pytest.mark.parametrize("left", AT_THE_END)
def test_what_a_test_left_is_named_when_the_tests_are_done(
    pytester, run, left: str, xdist: bool
) -> None:
    body, verb, when, counts, status = AT_THE_END[left]
    make_tests(pytester, body)
    # With xdist, a worker finds it after its last test and tells the
    # controller, which prints it (loadfile: C and D on one worker).
    args = ["-n", "2", "--dist", "loadfile"] if xdist else []

    result = run("--zombiewatch", "--zombiewatch-settle=0.2", *args)

    [pid] = pids(pytester, "child")
    assert_summary_names(result, f"test_inner.py::test_c {verb} pid {pid} ", when)
    assert f"zombiewatch: {counts}" in result.outlines
    assert result.ret == status


def test_a_zombie_made_during_an_unguarded_test_is_blamed_when_the_next_begins(
    pytester, run
) -> None:
    # C's child exits during D, which is not guarded; E's guard finds the
    # zombie when E begins: C's leak, and E passes.
    make_tests(
        pytester,
        AT_THE_END["zombie"][0] + "\ndef test_e():\n    pass\n",
    )

    result = run("--zombiewatch", "--zombiewatch-settle=0.2")

    result.assert_outcomes(passed=3)
    [pid] = pids(pytester, "child")
    assert_summary_names(
        result,
        f"test_inner.py::test_c leaked pid {pid} ",
        "found before test_inner.py::test_e began",
    )
    assert "zombiewatch: 2 tests guarded, 1 test leaked 1 zombie" in result.outlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("scope", ["module", "session"])
def test_a_wider_fixtures_child_is_blamed_on_the_fixture(pytester, run, scope: str) -> None:
    make_tests(
        pytester,
        """
        @pytest.fixture(scope="SCOPE")
        def server():
            p = subprocess.Popen(UNTIL_EOF, stdin=subprocess.PIPE)
            record("server", p.pid)
            yield p
            p.stdin.close()
            exited(p.pid)  # stopped, never collected

        def test_one(server):
            pass

        def test_two(server):
            pass
        """.replace("SCOPE", scope),
    )

    result = run("--zombiewatch", "--zombiewatch-settle=0.2")

    # Neither test fails for it: the fixture, set up in test_one and torn
    # down in test_two, is what leaked.
    result.assert_outcomes(passed=2)
    [pid] = pids(pytester, "server")
    assert "left pid" not in result.stdout.str()  # not test_one's to collect
    assert any(
        line.startswith(f"zombiewatch: fixture 'server' ({scope} scope) leaked pid {pid} ")
        for line in summary_lines(result)
    ), result.outlines
    assert "zombiewatch: 2 tests guarded, 1 test leaked 1 zombie" in result.outlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# -- a zombie outside the test's tree --------------------------------------------------


# The inner run's orphans escape this test's tree too.
ESCAPES_HERE = pytest.mark.filterwarnings("ignore::zombiewatch.pytest_plugin.ZombiewatchWarning")


@ESCAPES_HERE
@pytest.mark.parametrize("how", ["events", "sample"])
def test_an_orphan_that_escaped_the_tree_does_not_fail_the_test(pytester, run, how) -> None:
    observe_by(pytester, how)
    # The case of #17: sh's child `true` exits at once; sh became `sleep`,
    # which never collects it; when sleep exits (a thread waits for it) the
    # zombie goes to PID 1, outside the test's tree.
    make_tests(
        pytester,
        """
        @pytest.mark.parametrize("i", range(3))
        def test_orphan(i):
            p = subprocess.Popen(["sh", "-c", "true & exec sleep 0.3"])
            threading.Thread(target=p.wait).start()
        """,
    )

    result = run("--zombiewatch")

    result.assert_outcomes(passed=3)
    assert "zombiewatch: 3 tests guarded, no test leaked a zombie" in " ".join(
        summary_lines(result)
    )


def events_or_skip() -> None:
    from zombiewatch import observe

    reason = observe.events_unavailable_reason()
    if reason is not None:
        pytest.skip(f"only kernel events see every escape: {reason}")


ORPHAN = f"""
MIDDLE = {MIDDLE.replace("COLLECT", "False")!r}

def test_orphan():
    p = subprocess.Popen(
        [sys.executable, "-c", MIDDLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    record("middle", p.pid)
    record("orphan", int(p.stdout.readline()))
    p.stdin.close()
    p.wait()
"""


# Not asked, then each way of asking: option, ini key, marker.
FAIL_ORPHANS = {
    "no": ([], ORPHAN),
    "option": (["--zombiewatch-fail-orphans"], ORPHAN),
    "ini": (["-o", "zombiewatch_fail_orphans=true"], ORPHAN),
    "marker": (
        [],
        ORPHAN.replace(
            "def test_orphan", "@pytest.mark.zombiewatch(fail_orphans=True)\ndef test_orphan"
        ),
    ),
}


@ESCAPES_HERE
@pytest.mark.parametrize("asked", FAIL_ORPHANS)
def test_an_escaped_orphan_is_reported_and_fails_only_if_asked(pytester, run, asked) -> None:
    events_or_skip()
    args, body = FAIL_ORPHANS[asked]
    fail = asked != "no"
    make_tests(pytester, body)

    result = run("--zombiewatch", *args)

    [middle], [orphan] = pids(pytester, "middle"), pids(pytester, "orphan")
    said = (
        f"pid {orphan} 'python3' escaped this test's tree, a zombie: its parent pid "
        f"{middle} exited without collecting it; pid "
    )
    if fail:
        result.assert_outcomes(passed=1, errors=1)
        text = error_text(result, "test_orphan")
        assert "this test orphaned processes (--zombiewatch-fail-orphans)" in text
        assert said in text.replace("'python'", "'python3'")
    else:
        result.assert_outcomes(passed=1, warnings=1)
        assert said in result.stdout.str().replace("'python'", "'python3'")
        assert "1 orphan escaped" in " ".join(summary_lines(result))


# test_one's tree: a starter, under it a middle process holding a zombie.
# Killing the starter sends the middle process, zombie and all, out of the
# tree, where the zombie stays until test_three lets the middle one go.
LEFT_WITH_ITS_PARENT = f"""
MIDDLE = {MIDDLE.replace("COLLECT", "True")!r}
STARTER = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', sys.argv[1]]); time.sleep(600)"
)

def test_one(zombie_guard):
    p = subprocess.Popen(
        [sys.executable, "-c", STARTER, MIDDLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    KEEP.append(p)
    zombie = int(p.stdout.readline())
    zombie_guard.count()  # a look while the zombie is held inside the tree
    p.kill()
    p.wait()
    record("zombie", zombie)
    with open(f"/proc/{{zombie}}/stat") as f:
        record("middle", f.read().rsplit(")", 1)[1].split()[1])

def test_two(zombie_guard):
    # Its first look to find a child comes now, with the zombie out there.
    p = subprocess.Popen(UNTIL_EOF, stdin=subprocess.PIPE)
    zombie_guard.count()
    p.stdin.close()
    p.wait()

def test_three():
    KEEP[0].stdin.close()  # the middle process collects its zombie and exits
"""


@ESCAPES_HERE
@pytest.mark.parametrize("how", ["events", "sample"])
def test_an_earlier_tests_escape_is_not_the_next_tests(pytester, run, how) -> None:
    observe_by(pytester, how)
    make_tests(pytester, LEFT_WITH_ITS_PARENT)

    result = run("--zombiewatch", "--zombiewatch-fail-orphans")

    # Only test_one orphaned anything; test_two, which looks while that
    # zombie is still out there, is not blamed for it.
    result.assert_outcomes(passed=3, errors=1)
    assert [line for line in result.outlines if line.startswith("ERROR ")] == [
        line for line in result.outlines if line.startswith("ERROR test_inner.py::test_one ")
    ]
    [zombie], [middle] = pids(pytester, "zombie"), pids(pytester, "middle")
    # Its parent did not exit: it went out of the tree with the zombie.
    assert re.search(
        rf"pid {zombie} 'python3?' escaped this test's tree, a zombie: its parent pid "
        rf"{middle} left the tree with it and holds it now",
        error_text(result, "test_one"),
    )
    assert "2 orphans escaped" in " ".join(summary_lines(result))


# -- the garbage collector -----------------------------------------------------------

CYCLE = """
class Spawn:
    # As pexpect and ptyprocess do: the child is collected in __del__, and
    # the object sits in a reference cycle, so only the collector frees it.
    def __init__(self):
        self.proc = subprocess.Popen(["true"])
        self.me = self

    def __del__(self):
        self.proc.wait()

def test_cycle():
    gc.disable()  # the collector runs when the guard says, not by chance
    spawn = Spawn()
    record("cycle", spawn.proc.pid)
    exited(spawn.proc.pid)
    del spawn
"""


def test_a_zombie_held_by_a_reference_cycle_goes_after_gc_and_says_so(pytester, run) -> None:
    make_tests(pytester, CYCLE)

    result = run("--zombiewatch", "--zombiewatch-settle=0.2")

    result.assert_outcomes(passed=1, warnings=1)
    [pid] = pids(pytester, "cycle")
    result.stdout.fnmatch_lines(
        [
            f"*zombiewatch: pid {pid} 'true': collected only after gc.collect(), so held by "
            "an object in a reference cycle: close it explicitly*"
        ]
    )


# Each way of turning the collection off: option, ini key, marker.
NO_GC = {
    "option": (["--zombiewatch-no-gc"], CYCLE),
    "ini": (["-o", "zombiewatch_gc=false"], CYCLE),
    "marker": (
        [],
        CYCLE.replace("def test_cycle", "@pytest.mark.zombiewatch(gc=False)\ndef test_cycle"),
    ),
}


@pytest.mark.parametrize("off", NO_GC)
def test_without_gc_the_same_zombie_fails_the_test(pytester, run, off: str) -> None:
    args, body = NO_GC[off]
    make_tests(pytester, body)

    result = run("--zombiewatch", "--zombiewatch-settle=0.2", *args)

    result.assert_outcomes(passed=1, errors=1)
    [pid] = pids(pytester, "cycle")
    assert f"pid {pid} 'true'" in error_text(result, "test_cycle")
