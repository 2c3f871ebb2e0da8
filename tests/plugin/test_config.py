"""Off until asked for; every way of asking; precedence; bad values name their source."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.plugin.conftest import error_text

pytest_plugins = ["pytester"]

# A test that leaks one zombie; guarded, it errors at teardown.
LEAK = textwrap.dedent(
    """
    import os

    import pytest

    KEEP = []


    def fork_exit():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        KEEP.append(pid)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not collected
        return pid


    {decorator}
    def test_leak({args}):
        for _ in range({count}):
            fork_exit()
    """
)


def leak(pytester, decorator: str = "", args: str = "", count: int = 1) -> None:
    pytester.makepyfile(test_leak=LEAK.format(decorator=decorator, args=args, count=count))


# -- off until asked for ---------------------------------------------------------


def test_installed_but_not_asked_for_it_changes_nothing(pytester, run) -> None:
    leak(pytester)

    result = run("--strict-markers")

    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "zombiewatch:" not in result.stdout.str()  # no header, no summary line
    # ... though it is installed, through its entry point.
    result.stdout.fnmatch_lines(["plugins: *zombiewatch-*"])


def test_no_start_wrappers_until_a_test_is_guarded(pytester, run) -> None:
    # The wrappers of os.fork's callbacks, Popen, posix_spawn and os.system
    # stay once installed: a session that guards nothing never installs
    # them, and one that guards installs them with its first guard.
    pytester.makepyfile(
        """
        import os
        import subprocess
        import sys

        import pytest

        def test_unguarded():
            assert "zombiewatch._starts" not in sys.modules
            assert not hasattr(os.system, "__wrapped__")
            assert not hasattr(subprocess.Popen._execute_child, "__wrapped__")

        @pytest.mark.zombiewatch
        def test_guarded():
            from zombiewatch import _starts

            assert _starts._RECORDER is not None and _starts._RECORDER.active
            assert hasattr(os.system, "__wrapped__")
            assert hasattr(subprocess.Popen._execute_child, "__wrapped__")

        def test_after():
            from zombiewatch import _starts

            assert not _starts._RECORDER.active  # installed, idle outside a guarded test
        """
    )

    result = run()

    result.assert_outcomes(passed=3)


def test_importing_the_plugin_has_no_side_effects() -> None:
    # A fresh interpreter: this one imported psutil long ago.
    code = textwrap.dedent(
        """
        import os, signal, sys, threading
        before = {s: signal.getsignal(s) for s in signal.valid_signals()}
        import zombiewatch.pytest_plugin
        assert {s: signal.getsignal(s) for s in signal.valid_signals()} == before
        for heavy in ("psutil", "click", "zombiewatch.monitor"):
            assert heavy not in sys.modules, heavy + " imported"
        assert threading.active_count() == 1
        from zombiewatch._procfs import read_children
        assert read_children(os.getpid()) == [], "it started a process"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_guarded_session_installs_no_signal_handler_and_no_thread(pytester, run) -> None:
    pytester.makepyfile(
        """
        import signal, threading

        def test_one():
            pass

        def test_two():
            assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
            assert threading.active_count() == 1
        """
    )

    run("--zombiewatch").assert_outcomes(passed=2)


# -- every way to turn it on -------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "decorator", "args", "cli"),
    [
        ("option", "", "", ["--zombiewatch"]),
        ("pytest.ini", "", "", []),
        ("pyproject.toml", "", "", []),
        ("marker", "@pytest.mark.zombiewatch", "", []),
        ("marker with arguments", "@pytest.mark.zombiewatch(settle=0.1)", "", []),
        ("fixture", "", "zombie_guard", []),
        ("module marker", "pytestmark = pytest.mark.zombiewatch", "", []),
    ],
)
def test_each_way_of_asking_turns_it_on(pytester, run, how, decorator, args, cli) -> None:
    leak(pytester, decorator, args)
    if how == "pytest.ini":
        pytester.makeini("[pytest]\nzombiewatch = true\n")
    elif how == "pyproject.toml":
        pytester.makepyprojecttoml("[tool.pytest.ini_options]\nzombiewatch = true\n")

    result = run("--zombiewatch-settle=0.1", *cli)

    result.assert_outcomes(passed=1, errors=1)
    assert "this test left 1 zombie process" in error_text(result, "test_leak")


def test_a_fixture_requested_at_run_time_guards_the_test(pytester, run) -> None:
    leak(pytester, args="request")
    pytester.makeconftest(
        (pytester.path / "conftest.py").read_text()
        + textwrap.dedent(
            """
            import pytest

            @pytest.fixture(autouse=True)
            def dynamic(request):
                request.getfixturevalue("zombie_guard")
            """
        )
    )

    result = run("--zombiewatch-settle=0.1")

    result.assert_outcomes(passed=1, errors=1)
    assert "not one yet when zombie_guard was requested" in error_text(result, "test_leak")


def test_the_header_and_summary_say_it_is_on(pytester, run) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_runs():
            pass

        @pytest.mark.skip(reason="not run, so not guarded")
        def test_skipped():
            pass
        """
    )

    result = run("--zombiewatch", "--zombiewatch-allow=2", "--zombiewatch-reap")

    assert "zombiewatch: guarding every test (settle 1 s, allow 2, reaping its own children)" in (
        result.outlines
    )
    assert "zombiewatch: 1 test guarded, no test leaked a zombie" in result.outlines


# -- precedence: marker > option > ini > default -------------------------------------


@pytest.mark.parametrize(
    ("ini", "cli", "decorator", "guarded", "passes"),
    [
        # allow decides: the test leaks 2 zombies.
        ("zombiewatch = true\nzombiewatch_allow = 5", [], "", True, True),
        ("zombiewatch = true\nzombiewatch_allow = 5", ["--zombiewatch-allow=1"], "", True, False),
        (
            "zombiewatch = true\nzombiewatch_allow = 5",
            ["--zombiewatch-allow=1"],
            "@pytest.mark.zombiewatch(allow=2)",
            True,
            True,
        ),
        (
            "",
            ["--zombiewatch", "--zombiewatch-allow=5"],
            "@pytest.mark.zombiewatch(allow=1)",
            True,
            False,
        ),
        # on or off
        ("zombiewatch = false", ["--zombiewatch"], "", True, False),
        ("zombiewatch = true", [], "@pytest.mark.zombiewatch(enabled=False)", False, True),
        ("", ["--zombiewatch"], "@pytest.mark.zombiewatch(enabled=False)", False, True),
        ("zombiewatch = true", ["-o", "zombiewatch=false"], "", False, True),
    ],
)
def test_precedence_marker_option_ini(pytester, run, ini, cli, decorator, guarded, passes) -> None:
    leak(pytester, decorator, count=2)
    pytester.makeini(f"[pytest]\nzombiewatch_settle = 0.1\n{ini}\n")

    result = run(*cli)

    if passes:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(passed=1, errors=1)
    assert ("zombiewatch: 1 test guarded" in result.stdout.str()) == guarded


@pytest.mark.parametrize(
    ("ini", "cli", "decorator", "settle"),
    [
        ("zombiewatch_settle = 0.3", [], "", "0.3"),
        ("zombiewatch_settle = 0.3", ["--zombiewatch-settle=0.2"], "", "0.2"),
        (
            "zombiewatch_settle = 0.3",
            ["--zombiewatch-settle=0.2"],
            "@pytest.mark.zombiewatch(settle=0.1)",
            "0.1",
        ),
        ("", [], "", "1"),
    ],
)
def test_precedence_of_the_settle_window(pytester, run, ini, cli, decorator, settle) -> None:
    leak(pytester, decorator)
    pytester.makeini(f"[pytest]\nzombiewatch = true\n{ini}\n")

    result = run(*cli)

    assert f"after a {settle} s settle window" in error_text(result, "test_leak")


# -- bad values name their source --------------------------------------------------


@pytest.mark.parametrize(
    ("ini", "cli", "message"),
    [
        ("", ["--zombiewatch-settle=-1"], "--zombiewatch-settle=-1: settle must be*got '-1'"),
        ("", ["--zombiewatch-settle=soon"], "--zombiewatch-settle=soon: settle must be*"),
        ("", ["--zombiewatch-settle=nan"], "--zombiewatch-settle=nan: settle must be*"),
        ("", ["--zombiewatch-settle=inf"], "--zombiewatch-settle=inf: settle must be*"),
        ("", ["--zombiewatch-allow=-1"], "--zombiewatch-allow=-1: allow must be*got '-1'"),
        ("", ["--zombiewatch-allow=1.5"], "--zombiewatch-allow=1.5: allow must be*"),
        ("zombiewatch_settle = x", [], "ini key zombiewatch_settle in *tox.ini: settle must be*"),
        ("zombiewatch_allow = many", [], "ini key zombiewatch_allow in *tox.ini: allow must*"),
        ("zombiewatch = maybe", [], "ini key zombiewatch in *tox.ini: expected true or false*"),
        ("zombiewatch_reap = sure", [], "ini key zombiewatch_reap in *tox.ini: expected true*"),
        ("zombiewatch_gc = often", [], "ini key zombiewatch_gc in *tox.ini: expected true*"),
        ("zombiewatch_fail_orphans = x", [], "ini key zombiewatch_fail_orphans in *: expected*"),
        ("", ["-o", "zombiewatch_settle=-2"], "-o zombiewatch_settle: settle must be*got '-2'"),
        ("", ["-o", "zombiewatch=maybe"], "-o zombiewatch: expected true or false*'maybe'*"),
    ],
)
def test_a_bad_option_or_ini_value_is_a_usage_error(pytester, ini, cli, message) -> None:
    pytester.makefile(".ini", tox=f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_one(): pass")

    result = pytester.runpytest(*cli)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: zombiewatch: {message}"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("zombiewatch(settle='x')", "settle must be a number of seconds >= 0, got 'x'"),
        ("zombiewatch(settle=-0.5)", "settle must be a number of seconds >= 0, got -0.5"),
        ("zombiewatch(allow=-1)", "allow must be a whole number of zombies >= 0, got -1"),
        ("zombiewatch(allow=True)", "allow must be a whole number*got True"),
        ("zombiewatch(enabled='no')", "enabled must be True or False, got 'no'"),
        ("zombiewatch(1.0, 2)", "takes at most one positional argument*got (1.0, 2)*"),
        ("zombiewatch(0.5, settle=1)", "takes at most one positional argument*"),
        ("zombiewatch(-1)", "settle must be a number of seconds >= 0, got -1"),
        ("zombiewatch(gc='off')", "gc must be True or False, got 'off'"),
        ("zombiewatch(fail_orphans=1)", "fail_orphans must be True or False, got 1"),
        (
            "zombiewatch(setle=1)",
            "unknown argument setle (expected settle, allow, enabled, gc, fail_orphans)",
        ),
    ],
)
def test_a_bad_marker_fails_its_own_test_naming_the_marker(pytester, marker, message) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_bad():
            pass

        def test_good():
            pass
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_bad*",
            "zombiewatch: @pytest.mark.zombiewatch on test_a_bad_marker_fails*.py::test_bad: "
            + message,
        ]
    )
    # Said once, not again as the cause of a second exception.
    errors = result.stdout.str().split("short test summary info")[0]
    assert errors.count("zombiewatch: @pytest.mark.zombiewatch on") == 1
    assert "During handling" not in result.stdout.str()


def test_the_settle_window_may_be_the_markers_one_positional_argument(pytester, run) -> None:
    # As pytest-timeout takes timeout(5).
    leak(pytester, "@pytest.mark.zombiewatch(0.1)")

    result = run()

    assert "after a 0.1 s settle window" in error_text(result, "test_leak")


def test_a_bad_ini_value_is_an_error_even_when_the_option_is_given(pytester) -> None:
    pytester.makepyfile("def test_one(): pass")

    result = pytester.runpytest("--zombiewatch", "-o", "zombiewatch=maybe")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: zombiewatch: -o zombiewatch: expected true or false*"])


@pytest.mark.parametrize("args", [["--collect-only"], ["-k", "nothing_matches"]])
def test_no_summary_line_when_no_test_ran(pytester, run, args) -> None:
    leak(pytester)

    result = run("--zombiewatch", *args)

    assert not [
        line for line in result.outlines if line.startswith("zombiewatch: ") and "guarded" in line
    ]
    assert "0 tests guarded" not in result.stdout.str()


def test_the_plugin_loads_where_xdist_is_not_installed(pytester) -> None:
    # xdist's hooks are optional: without xdist pytest would refuse the
    # plugin ("unknown hook 'pytest_testnodedown'") before the first test.
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--zombiewatch", "-p", "no:xdist")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*1 passed*"])
