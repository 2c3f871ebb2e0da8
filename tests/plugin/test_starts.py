"""Every leak names the line of code that started it (#21).

The inner test files mark each starting line with a comment ``# START:
name``; the test finds that line's number and expects it in the message.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.plugin.conftest import PRELUDE, error_text, observe_by, pids

pytest_plugins = ["pytester"]

GUARD = ("--zombiewatch", "--zombiewatch-settle=0.2")


def make_tests(pytester, body: str) -> dict[str, int]:
    """Write the inner tests; return {name: line} of their START markers."""
    path = pytester.makepyfile(test_inner=PRELUDE + textwrap.dedent(body))
    source = path.read_text()  # as written: pytester strips the leading blank lines
    return {
        match.group(1): number
        for number, line in enumerate(source.splitlines(), start=1)
        if (match := re.search(r"# START:(\w+)", line))
    }


def started(line: int, function: str, call: str) -> str:
    return f"started at test_inner.py:{line} in {function} ({call}"


# Each way a user starts a child, leaking it; (test body, what the message says).
CASES = {
    "popen": (
        """
        def test_leak():
            leak(subprocess.Popen(["true"]))  # START:here
        """,
        "test_leak",
        "subprocess.Popen(['true'])",
    ),
    "multiprocessing": (
        """
        def test_leak():
            p = multiprocessing.get_context("fork").Process(target=int)
            p.start()  # START:here
            leak(p)
        """,
        "test_leak",
        "os.fork()",
    ),
    "fork": (
        """
        def test_leak():
            pid = os.fork()  # START:here
            if pid == 0:
                os._exit(0)
            record("leak", pid)
            exited(pid)
        """,
        "test_leak",
        "os.fork()",
    ),
    "pty": (
        """
        import pty

        def test_leak():
            pid, fd = pty.fork()  # START:here
            if pid == 0:
                os._exit(0)
            record("leak", pid)
            exited(pid)
            os.close(fd)
        """,
        "test_leak",
        "os.forkpty()",
    ),
    "posix_spawn": (
        """
        def test_leak():
            pid = os.posix_spawn("/bin/true", ["true"], os.environ)  # START:here
            record("leak", pid)
            exited(pid)
        """,
        "test_leak",
        "os.posix_spawn('/bin/true', ['true'])) [matched by name and start time, not pid",
    ),
    "fixture": (
        """
        @pytest.fixture
        def child():
            leak(subprocess.Popen(["true"]))  # START:here

        def test_leak(child):
            pass
        """,
        "child",
        "subprocess.Popen(['true'])",
    ),
    "thread": (
        """
        def start():
            leak(subprocess.Popen(["true"]))  # START:here

        def test_leak():
            t = threading.Thread(target=start, name="starter")
            t.start()
            t.join()
        """,
        "start",
        "subprocess.Popen(['true']), in thread 'starter')",
    ),
}


@pytest.mark.parametrize("observe", ["events", "sample"])
@pytest.mark.parametrize("how", CASES)
def test_a_leak_names_the_line_that_started_it(pytester, run, how: str, observe: str) -> None:
    observe_by(pytester, observe)
    body, function, call = CASES[how]
    lines = make_tests(pytester, body)

    result = run(*GUARD)

    result.assert_outcomes(passed=1, errors=1)
    [pid] = pids(pytester, "leak")
    text = error_text(result, "test_leak")
    assert f"pid {pid} " in text
    assert started(lines["here"], function, call) in text, text
    assert ("(kernel events;" in text) == (observe == "events")  # watched as asked


def test_two_leaks_on_two_lines_each_name_their_own(pytester, run) -> None:
    lines = make_tests(
        pytester,
        """
        def test_leak():
            a = subprocess.Popen(["true"])  # START:a
            b = subprocess.Popen(["true"])  # START:b
            KEEP.extend([a, b])
            record("a", a.pid)
            record("b", b.pid)
            exited(a.pid)
            exited(b.pid)
        """,
    )

    result = run(*GUARD)

    [a], [b] = pids(pytester, "a"), pids(pytester, "b")
    text = error_text(result, "test_leak")
    for pid, line in ((a, lines["a"]), (b, lines["b"])):
        # The zombie's own entry, up to the next one, names its own line.
        entry = text.split(f"  pid {pid} ")[1].split("\n  pid ")[0]
        assert started(line, "test_leak", "subprocess.Popen(['true'])") in entry, text


def test_a_library_call_names_the_library_and_the_users_line(pytester, run) -> None:
    # A library as installed: under a site-packages directory.
    library = pytester.mkdir("site-packages") / "spawnlib"
    library.mkdir()
    (library / "__init__.py").write_text(
        textwrap.dedent(
            """
            import subprocess


            def spawn(argv):
                return subprocess.Popen(argv)  # the library's line: 5
            """
        )
    )
    lines = make_tests(
        pytester,
        """
        sys.path.insert(0, os.path.abspath("site-packages"))
        import spawnlib

        def test_leak():
            leak(spawnlib.spawn(["true"]))  # START:here
        """,
    )

    result = run(*GUARD)

    text = error_text(result, "test_leak")
    assert (
        f"started at spawnlib/__init__.py:6 in spawn ← test_inner.py:{lines['here']} in "
        "test_leak (subprocess.Popen(['true']))"
    ) in text, text


# The inner run's orphan escapes this test's tree too.
@pytest.mark.filterwarnings("ignore::zombiewatch.pytest_plugin.ZombiewatchWarning")
def test_an_os_system_shell_that_orphans_its_child_is_named(pytester, run) -> None:
    # The shell's background child exits at once and is never collected by
    # the shell (now `sleep`); when the shell exits, PID 1 gets the zombie.
    from zombiewatch import observe

    if observe.events_unavailable_reason() is not None:
        pytest.skip("only kernel events see an orphan escape between two looks")
    lines = make_tests(
        pytester,
        """
        def test_shell():
            os.system("true & exec sleep 0.3")  # START:here
        """,
    )

    result = run(*GUARD, "--zombiewatch-fail-orphans")

    result.assert_outcomes(passed=1, errors=1)
    text = error_text(result, "test_shell")
    assert "escaped this test's tree, a zombie" in text
    assert f"test_inner.py:{lines['here']} in test_shell (os.system('true & exec sleep 0.3')" in (
        text
    ), text


def test_an_asyncio_child_left_running_names_the_coroutines_line(pytester, run) -> None:
    # asyncio (3.11's thread watcher) collects its children itself; a child
    # still running when the test ends is named, with the await that made it.
    lines = make_tests(
        pytester,
        """
        def test_async():
            async def main():
                proc = await asyncio.create_subprocess_exec(  # START:here
                    *UNTIL_EOF, stdin=subprocess.PIPE
                )
                KEEP.append(proc)
                record("child", proc.pid)
                record("kill-at-exit", proc.pid)

            asyncio.run(main())
        """,
    )

    result = run(*GUARD)

    [pid] = pids(pytester, "child")
    out = result.stdout.str()
    assert f"left pid {pid} " in out
    assert f"started at test_inner.py:{lines['here']} in main (subprocess.Popen([" in out, out


def test_a_late_leak_in_the_summary_names_its_line(pytester, run) -> None:
    lines = make_tests(
        pytester,
        """
        def test_c():
            p = subprocess.Popen(UNTIL_EOF, stdin=subprocess.PIPE)  # START:here
            KEEP.append(p)
            record("child", p.pid)

        def test_d():
            KEEP[0].stdin.close()
            exited(KEEP[0].pid)
        """,
    )

    result = run(*GUARD)

    [pid] = pids(pytester, "child")
    [line] = [line for line in result.outlines if f"leaked pid {pid} " in line]
    assert f"; started at test_inner.py:{lines['here']} in test_c (subprocess.Popen([" in line


def test_the_fixture_and_junit_carry_it(pytester, run) -> None:
    lines = make_tests(
        pytester,
        """
        def test_body(zombie_guard):
            p = subprocess.Popen(["true"])  # START:here
            KEEP.append(p)
            exited(p.pid)
            [zombie] = zombie_guard.zombies
            assert zombie.started_at.startswith("test_inner.py:%d in test_body (" % LINE)
            p.wait()

        def test_leak():
            p = subprocess.Popen(["true"])  # START:leak
            KEEP.append(p)
            exited(p.pid)
        """,
    )
    with (pytester.path / "test_inner.py").open("a") as f:
        f.write(f"\nLINE = {lines['here']}\n")  # at the end: no line moves

    result = run(*GUARD, "--junitxml=junit.xml")

    result.assert_outcomes(passed=2, errors=1)
    junit = (pytester.path / "junit.xml").read_text()
    assert f"started at test_inner.py:{lines['leak']} in test_leak" in junit


def test_xdist_workers_name_the_line(pytester, run) -> None:
    pytest.importorskip("xdist")
    lines = make_tests(pytester, CASES["popen"][0])
    pytester.makepyfile(test_other="def test_other(): pass")

    result = run(*GUARD, "-n", "2")

    result.assert_outcomes(passed=2, errors=1)
    assert started(lines["here"], "test_leak", "subprocess.Popen(['true'])") in error_text(
        result, "test_leak"
    )
