"""A guarded test that leaves zombies fails, naming them; one that collects passes.

Each case runs a generated test file in a fresh pytest process
(``runpytest_subprocess``), so the zombies are that process's children and
this one is untouched.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from tests.plugin.conftest import MIDDLE, error_text, pids

pytest_plugins = ["pytester"]

# Shared by the generated test files.
PRELUDE = textwrap.dedent(
    """
    import multiprocessing
    import os
    import subprocess
    import sys

    import pytest

    KEEP = []  # leaked children stay referenced, as in a real suite


    def record(name, pid):
        with open(name + ".pid", "a") as f:
            f.write(f"{pid}\\n")


    def exited(pid):
        # Block until the child has exited, without collecting it: its
        # zombie exists before the test ends, however loaded the machine.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


    def fork_exit():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        return pid

    """
)

# How a user starts a child, and how they should collect it.
START_AND_COLLECT = {
    "popen": (
        "p = subprocess.Popen(['true']); KEEP.append(p); pid = p.pid",
        "p.wait()",
    ),
    "fork": ("pid = fork_exit()", "os.waitpid(pid, 0)"),
    "multiprocessing": (
        "p = multiprocessing.get_context('fork').Process(target=int); p.start(); "
        "KEEP.append(p); pid = p.pid",
        "p.join()",
    ),
}

GUARD = ("--zombiewatch", "--zombiewatch-settle=0.2")


def make_tests(pytester, body: str) -> None:
    pytester.makepyfile(test_inner=PRELUDE + textwrap.dedent(body))


@pytest.mark.parametrize("how", START_AND_COLLECT)
def test_a_child_never_collected_fails_its_test_with_its_pid(pytester, run, how: str) -> None:
    start, _ = START_AND_COLLECT[how]
    make_tests(
        pytester,
        f"""
        def test_leak():
            {start}
            record("leak", pid)
            exited(pid)
        """,
    )

    result = run(*GUARD)

    result.assert_outcomes(passed=1, errors=1)  # the call passed; teardown errs
    [pid] = pids(pytester, "leak")
    text = error_text(result, "test_leak")
    assert "this test left 1 zombie process (allowed: 0)" in text
    assert f"pid {pid} " in text
    assert "(this test process)" in text
    assert "command line: none" in text
    assert "its parent's: " in text
    assert "pytest" in text.split("its parent's: ")[1]
    if how == "popen":
        assert f"pid {pid} 'true'" in text
    assert "zombiewatch: 1 test guarded, 1 test leaked 1 zombie" in result.outlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("how", START_AND_COLLECT)
def test_the_same_child_collected_passes(pytester, run, how: str) -> None:
    start, collect = START_AND_COLLECT[how]
    make_tests(
        pytester,
        f"""
        def test_collects():
            {start}
            {collect}
        """,
    )

    result = run(*GUARD)

    result.assert_outcomes(passed=1)
    assert "zombiewatch: 1 test guarded, no test leaked a zombie" in result.outlines
    assert result.ret == pytest.ExitCode.OK


def test_a_child_still_running_at_the_end_is_waited_for(pytester, run) -> None:
    # No help from the test: `true` may still be running at teardown; the
    # guard waits (the settle window) for it to exit, and finds its zombie.
    # 3 s, not the default 1 s: a busy host may take a while to run `true`
    # to its end, and the window costs its whole length here anyway.
    make_tests(
        pytester,
        """
        def test_leak():
            p = subprocess.Popen(["true"])
            KEEP.append(p)
            record("leak", p.pid)
        """,
    )

    result = run("--zombiewatch", "--zombiewatch-settle=3")

    result.assert_outcomes(passed=1, errors=1)
    [pid] = pids(pytester, "leak")
    assert f"pid {pid} 'true'" in error_text(result, "test_leak")
    assert "after a 3 s settle window" in error_text(result, "test_leak")


def test_only_the_test_that_leaks_fails_not_the_next(pytester, run) -> None:
    make_tests(
        pytester,
        """
        def test_leak():
            pid = fork_exit()
            exited(pid)

        def test_next():
            pid = fork_exit()
            os.waitpid(pid, 0)

        def test_last():
            pass
        """,
    )

    result = run(*GUARD)

    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leak*"])
    assert "ERROR at teardown of test_next" not in result.stdout.str()
    assert "zombiewatch: 3 tests guarded, 1 test leaked 1 zombie" in result.outlines


def test_a_zombie_grandchild_is_named_with_its_parent(pytester, run) -> None:
    # The middle process forks a child that exits, keeps it as a zombie
    # until its stdin closes, then collects it.
    make_tests(
        pytester,
        """
        MIDDLE = {middle!r}

        def test_grandchild():
            p = subprocess.Popen(
                [sys.executable, "-c", MIDDLE],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            KEEP.append(p)
            record("middle", p.pid)
            record("grandchild", int(p.stdout.readline()))

        def test_cleanup():
            p = KEEP.pop()
            p.stdin.close()
            assert p.wait() == 0
        """.replace("{middle!r}", repr(MIDDLE.replace("COLLECT", "True"))),
    )

    result = run(*GUARD, "--zombiewatch-reap")

    result.assert_outcomes(passed=2, errors=1)
    [middle], [grandchild] = pids(pytester, "middle"), pids(pytester, "grandchild")
    text = error_text(result, "test_grandchild")
    assert f"pid {grandchild} 'python" in text
    assert f"child of pid {middle} (a process this test started)" in text
    assert f"still running, started during this test: pid {middle} 'python" in text
    assert f"could not collect pid {grandchild}" in text
    assert f"only its parent (pid {middle}) can collect it" in text


@pytest.mark.parametrize(("allow", "fails"), [(2, False), (1, True)])
def test_allow_tolerates_that_many_zombies(pytester, run, allow: int, fails: bool) -> None:
    make_tests(
        pytester,
        f"""
        @pytest.mark.zombiewatch(allow={allow})
        def test_two():
            for _ in range(2):
                pid = fork_exit()
                record("two", pid)
                exited(pid)
        """,
    )

    result = run("--zombiewatch-settle=0.2")

    if fails:
        result.assert_outcomes(passed=1, errors=1)
        text = error_text(result, "test_two")
        assert "left 2 zombie processes (allowed: 1)" in text
        assert all(f"pid {pid} " in text for pid in pids(pytester, "two"))
        # Tests and zombies counted apart, each with its own plural.
        assert "zombiewatch: 1 test guarded, 1 test leaked 2 zombies" in result.outlines
    else:
        result.assert_outcomes(passed=1)
        assert "zombiewatch: 1 test guarded, no test leaked a zombie" in result.outlines


def test_the_settle_window_lets_a_late_reaper_collect(pytester, run) -> None:
    # The reaper thread collects only once teardown has begun: the guard
    # must give it time rather than judge at its first look.
    make_tests(
        pytester,
        """
        import threading

        def test_reaped_late(request):
            pid = fork_exit()
            exited(pid)
            go = threading.Event()

            def reap():
                go.wait()
                os.waitpid(pid, 0)

            threading.Thread(target=reap).start()
            request.addfinalizer(go.set)
        """,
    )

    result = run("--zombiewatch", "--zombiewatch-settle=30")

    result.assert_outcomes(passed=1)
    assert "zombiewatch: 1 test guarded, no test leaked a zombie" in result.outlines


@pytest.mark.parametrize("reap", [True, False])
def test_reap_collects_so_no_zombie_remains(pytester, run, reap: bool) -> None:
    make_tests(
        pytester,
        """
        LEAKED = []

        def test_leak():
            p = subprocess.Popen(["true"])
            KEEP.append(p)
            LEAKED.append(p.pid)
            record("leak", p.pid)
            exited(p.pid)

        def test_after():
            [pid] = LEAKED
            assert not os.path.exists(f"/proc/{pid}"), "the zombie is still there"
            # Popen finds its child gone and says so with returncode 0.
            assert KEEP[0].wait(timeout=5) == 0
        """,
    )

    result = run(*GUARD, *(["--zombiewatch-reap"] if reap else []))

    [pid] = pids(pytester, "leak")
    if reap:
        result.assert_outcomes(passed=2, errors=1)
        assert f"--zombiewatch-reap collected pid {pid}" in error_text(result, "test_leak")
        assert any(line.endswith("1 reaped)") for line in result.outlines)
    else:
        result.assert_outcomes(passed=1, failed=1, errors=1)
        result.stdout.fnmatch_lines(["*the zombie is still there*"])


def test_zombie_guard_in_a_test_body(pytester, run) -> None:
    make_tests(
        pytester,
        """
        from zombiewatch.pytest_plugin import ZombieLeak

        def test_counts_and_checks(zombie_guard):
            assert zombie_guard.count() == 0
            pid = fork_exit()
            exited(pid)
            assert zombie_guard.count() == 1
            assert [z.pid for z in zombie_guard.zombies] == [pid]
            assert zombie_guard.zombies[0].ppid == os.getpid()
            with pytest.raises(ZombieLeak, match=f"pid {pid} "):
                zombie_guard.check(settle=0)
            os.waitpid(pid, 0)
            zombie_guard.check()
            assert zombie_guard.count() == 0

        def test_check_fails_where_it_is_called(zombie_guard):
            pid = fork_exit()
            record("body", pid)
            exited(pid)
            zombie_guard.check(settle=0.1)
            raise AssertionError("not reached")
        """,
    )

    # Nothing but the fixture turns the guard on.
    result = run("--zombiewatch-settle=0.2")

    # The second test fails in its body and again at teardown: its zombie
    # is still there when it ends.
    result.assert_outcomes(passed=1, failed=1, errors=1)
    [pid] = pids(pytester, "body")
    result.stdout.fnmatch_lines(
        [
            "*def test_check_fails_where_it_is_called*",
            "*zombie_guard.check(settle=0.1)*",
            "E*ZombieLeak: zombiewatch: this test left 1 zombie process*0.1 s settle window*",
            f"E*pid {pid} *",
        ]
    )
    assert "not reached" not in result.stdout.str()
    assert "zombiewatch: 2 tests guarded, 1 test leaked 1 zombie" in result.stdout.str()


def test_the_no_child_probe_sees_a_zombie_and_never_collects_it() -> None:
    from zombiewatch._proctl import has_children as _has_children

    assert not _has_children()  # every earlier test collected its children
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        assert _has_children()
        assert _has_children()
    finally:
        # Still ours to collect, with its status: the probe took nothing.
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert not _has_children()


def test_with_kernel_events_a_leaked_zombies_age_is_exact(pytester, run) -> None:
    from zombiewatch import observe

    reason = observe.events_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no kernel events here: {reason}")
    make_tests(
        pytester,
        """
        import time

        def test_leak():
            pid = fork_exit()
            record("leak", pid)
            exited(pid)
            time.sleep(0.3)  # the zombie's age, before the guard's settle window
        """,
    )

    result = run(*GUARD)

    result.assert_outcomes(passed=1, errors=1)
    [pid] = pids(pytester, "leak")
    text = error_text(result, "test_leak")
    assert f"pid {pid} " in text
    age = float(text.split("a zombie for ")[1].split(" s since its exit (kernel events")[0])
    # At least the 0.3 s the test slept after the child exited, and not the
    # seconds since some earlier look: its exit time is the kernel's.
    assert 0.3 <= age < 30, text
