"""`zombiewatch scan` logic without processes: grouping, filters, exit codes,
who may be signalled, what a signal's outcome is called, usage errors.

``_procfs``' reads and ``send_signal`` are replaced with scripted ones,
the way gunicorn's arbiter tests script ``waitpid``.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from click.testing import CliRunner

from zombiewatch import _procfs, _proctl, scan_report
from zombiewatch import scan as scanner
from zombiewatch.cli import cli
from zombiewatch.errors import ExitCode

TICKS = 1000


def stat(
    pid: int, ppid: int, state: str = "Z", flags: int = 0, comm: str = "w"
) -> _procfs.ProcStat:
    # Fields 3-22 of /proc/PID/stat: state ppid pgrp session tty tpgid flags,
    # ten counters, nice... then num_threads (20), itrealvalue, starttime (22).
    after = [state, ppid, pid, pid, 0, -1, flags, *[0] * 10, 1, 0, TICKS + pid, 0]
    return _procfs.ProcStat(pid, f"{pid} ({comm}) {' '.join(map(str, after))}\n".encode())


def parent(pid: int, zombies: list[int], uid: int = 0, protected: str | None = None):
    return scan_report.ZombieParent(
        pid=pid,
        start_ticks=TICKS + pid,
        uid=uid,
        user="root" if uid == 0 else str(uid),
        name=f"p{pid}",
        cmdline=[f"/bin/p{pid}", "--flag"],
        zombies=[scan_report.ScannedZombie(z, "w", TICKS + z, 1.5) for z in zombies],
        protected=protected,
    )


# -- /proc/PID/stat parsing ------------------------------------------------------


def test_parse_stat_survives_spaces_and_parentheses_in_comm() -> None:
    fields = " ".join(
        ["Z", "42"] + ["0"] * 4 + [str(_procfs.PF_KTHREAD)] + ["0"] * 10 + ["1", "0", "777"]
    )
    data = f"99 (a) (b c) {fields} 0 0\n".encode()
    parsed = _procfs.ProcStat(99, data)
    assert parsed.comm == "a) (b c"
    assert parsed.state == "Z"
    assert parsed.ppid == 42
    assert parsed.num_threads == 1
    assert parsed.start_ticks == 777
    assert parsed.kernel_thread


def test_read_stat_of_this_process() -> None:
    me = _procfs.read_stat(os.getpid())
    assert me is not None
    assert me.ppid == os.getppid()
    assert me.state in "RS"
    assert _procfs.read_stat(2**22 + 1) is None  # above any pid_max


def test_ancestors_include_self_and_parent() -> None:
    found = _procfs.ancestors(os.getpid())
    assert {os.getpid(), os.getppid()} <= found


# -- grouping and filters ------------------------------------------------------------


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: zombies 10..59 under 100, 60..62 under 200, 63 under 1."""
    zombies = [stat(z, 100) for z in range(10, 60)]
    zombies += [stat(z, 200) for z in range(60, 63)]
    zombies += [stat(63, 1)]
    monkeypatch.setattr(_procfs, "scan_zombies", lambda: (zombies, 500))
    owners = {100: 0, 200: 1000, 1: 0}

    def describe(ppid, me, all_users=False):
        held = parent(ppid, [], uid=owners[ppid])
        held.protected = "PID 1 is never signalled" if ppid == 1 else None
        return held

    monkeypatch.setattr(scanner, "_describe", describe)


@pytest.mark.usefixtures("machine")
def test_groups_by_parent_sorted_by_count() -> None:
    result = scanner.scan()
    assert [(p.pid, p.count) for p in result.parents] == [(100, 50), (200, 3), (1, 1)]
    assert result.zombies == result.total_zombies == 54
    assert result.processes == 500
    assert result.return_code == ExitCode.ZOMBIES


@pytest.mark.usefixtures("machine")
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (scan_report.Filters(min_count=10), [100]),
        (scan_report.Filters(min_count=51), []),
        (scan_report.Filters(parents=(200,)), [200]),
        (scan_report.Filters(parents=(200, 1)), [200, 1]),
        (scan_report.Filters(uid=1000, user="alice"), [200]),
        (scan_report.Filters(uid=0, min_count=2), [100]),
    ],
)
def test_filters(filters: scan_report.Filters, expected: list[int]) -> None:
    result = scanner.scan(filters)
    assert [p.pid for p in result.parents] == expected
    assert result.total_zombies == 54
    assert result.return_code == (ExitCode.ZOMBIES if expected else ExitCode.OK)


@pytest.mark.usefixtures("machine")
def test_json_keys_are_stable() -> None:
    data = json.loads(scanner.scan().to_json())
    assert list(data) == [
        "zombies",
        "parents",
        "total_zombies",
        "processes",
        "scan_ms",
        "filters",
        "reap",
        "kill",
        "remaining",
        "exit_code",
    ]
    assert list(data["parents"][0]) == [
        "pid",
        "user",
        "uid",
        "name",
        "cmdline",
        "count",
        "oldest_age_max_s",
        "protected",
        "zombies",
    ]
    assert list(data["parents"][0]["zombies"][0]) == ["pid", "name", "age_max_s"]
    assert list(data["filters"]) == ["user", "uid", "min_count", "parent"]
    assert data["exit_code"] == 1


@pytest.mark.usefixtures("machine")
def test_text_says_the_age_is_an_upper_bound_and_explains_pid_1() -> None:
    text = scan_report.render_scan(scanner.scan())
    assert "54 zombies held by 3 parents" in text
    assert "OLDEST, AT MOST" in text
    assert "at most" in text
    assert "Zombies under PID 1 are orphans" in text
    assert "--reap would not signal:\n  1 p1: PID 1 is never signalled" in text
    assert "--reap would not signal" not in scan_report.render_scan(scanner.scan(), reaping=True)


@pytest.mark.usefixtures("machine")
def test_text_cuts_command_lines_to_a_terminal_only() -> None:
    result = scanner.scan(scan_report.Filters(parents=(100,)))
    result.parents[0].cmdline = ["/bin/long", "x" * 300]
    assert "x" * 300 in scan_report.render_scan(result)
    cut = scan_report.render_scan(result, width=80)
    assert all(len(line) <= 80 for line in cut.splitlines()[:4])
    assert "..." in cut


def test_no_zombies_text_names_the_filters(monkeypatch) -> None:
    monkeypatch.setattr(_procfs, "scan_zombies", lambda: ([stat(5, 100)], 10))
    result = scanner.scan(scan_report.Filters(min_count=3))
    assert result.return_code == ExitCode.OK
    assert scan_report.render_scan(result).startswith(
        "no zombie matches --min-count 3 (1 zombie in all"
    )
    monkeypatch.setattr(_procfs, "scan_zombies", lambda: ([], 10))
    assert scan_report.render_scan(scanner.scan()).startswith("no zombies (10 processes scanned")


# -- who may be signalled -----------------------------------------------------------


@pytest.mark.parametrize(
    ("proc", "expected"),
    [
        (stat(1, 0, "S"), "PID 1 is never signalled"),
        # By PF_KTHREAD, not by pid: in a PID namespace PID 2 and its
        # children are the application (#15).
        (stat(2, 0, "S", flags=_procfs.PF_KTHREAD), "a kernel thread"),
        (stat(2, 1, "S"), None),
        (stat(300, 2, "S"), None),
        (stat(301, 7, "S", flags=_procfs.PF_KTHREAD), "a kernel thread"),
        (stat(400, 7, "S"), "an ancestor of this scan (your shell or terminal?)"),
        (None, None),  # gone: nothing to protect
    ],
)
def test_protected_processes(proc, expected) -> None:
    assert scanner.protection(proc, 0, {os.getpid(), 400}) == expected


def test_a_parent_outside_the_pid_namespace_is_protected() -> None:
    held = scanner._describe(0, set())
    assert held.protected == "its parent is outside this PID namespace"


def test_this_scan_itself_is_protected() -> None:
    me = stat(os.getpid(), 7, "S")
    assert scanner.protection(me, os.getuid(), {os.getpid()}) == "this scan itself"


def test_other_users_processes_are_protected_unless_root_with_all_users(monkeypatch) -> None:
    proc = stat(500, 7, "S")
    monkeypatch.setattr(os, "geteuid", lambda: 54321)  # no passwd entry: shown as a number
    monkeypatch.setattr(os, "getuid", lambda: 54321)
    assert scanner.protection(proc, 54321, set()) is None
    assert scanner.protection(proc, 0, set()) == "owned by root, not by you (54321)"
    # kill(2) would refuse anyway: --all-users gives no one else's rights.
    assert scanner.protection(proc, 0, set(), all_users=True) == (
        "owned by root, not by you (54321)"
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    assert scanner.protection(proc, 0, set()) is None  # root's own
    assert scanner.protection(proc, 1234, set()) == (
        "owned by 1234, not by you (root); --all-users to signal it"
    )
    assert scanner.protection(proc, 1234, set(), all_users=True) is None


# -- what a signal did ---------------------------------------------------------------


@pytest.fixture
def signals(monkeypatch):
    """Script the machine: ``alive`` zombies stay, the rest vanish once their
    parent gets any signal; ``refuse`` parents raise EPERM; ``gone`` parents
    exited; ``dies`` parents exit on a signal other than SIGCHLD."""
    state: dict[str, Any] = {
        "alive": set(),
        "refuse": set(),
        "gone": set(),
        "dies": set(),
        "sent": [],
    }
    signalled: set[int] = set()

    def send_signal(pid, start_ticks, sig):
        if pid in state["refuse"]:
            raise PermissionError(1, "EPERM")
        if pid in state["gone"]:
            return False
        state["sent"].append((pid, sig))
        signalled.add(pid)
        return True

    def read_stat(pid):
        if pid >= 1000:  # a zombie: its parent is pid // 1000 * 100
            holder = pid // 1000 * 100
            if holder in signalled and pid not in state["alive"]:
                return None
            return stat(pid, holder)
        if pid in state["dies"] and any(p == pid and s != signal.SIGCHLD for p, s in state["sent"]):
            return None
        return stat(pid, 1, "S")

    monkeypatch.setattr(_proctl, "send_signal", send_signal)
    monkeypatch.setattr(_procfs, "read_stat", read_stat)
    return state


def result_of(*parents: scan_report.ZombieParent) -> scan_report.ScanResult:
    return scan_report.ScanResult(list(parents), sum(p.count for p in parents), 100, 0.001)


def test_nudge_outcomes(signals) -> None:
    signals["alive"] = {2001, 2002, 3002}
    signals["refuse"] = {400}
    signals["gone"] = {500}
    result = result_of(
        parent(100, [1001, 1002]),  # collects all
        parent(200, [2001, 2002]),  # ignores it
        parent(300, [3001, 3002]),  # collects one
        parent(400, [4001]),  # EPERM
        parent(500, [5001]),  # exited before the signal
        parent(1, [6001], protected="PID 1 is never signalled"),
    )
    round_ = scanner.nudge(result, wait=0.01)
    outcomes = {o.parent.pid: o for o in round_.outcomes}
    assert outcomes[100].verdict == "collected"
    assert outcomes[100].collected == [1001, 1002]
    assert outcomes[200].verdict == "ignored"
    assert outcomes[200].remaining == [2001, 2002]
    assert outcomes[200].held_by == [200]
    assert outcomes[300].verdict == "partly collected"
    assert outcomes[400].why_not == "permission denied"
    assert outcomes[500].why_not == "it exited before the signal"
    assert outcomes[1].why_not == "PID 1 is never signalled"
    assert {pid for pid, _ in signals["sent"]} == {100, 200, 300}
    assert all(sig == signal.SIGCHLD for _, sig in signals["sent"])
    assert result.remaining == 2 + 1 + 1 + 1 + 1
    assert result.return_code == ExitCode.ZOMBIES
    text = scan_report.render_round(round_)
    assert "100 p100: collected all 2 zombies" in text
    assert "200 p200: ignored it; 2 zombies remain" in text
    assert "300 p300: collected 1, 1 remain" in text
    assert "1 p1: PID 1 is never signalled (1 zombie)" in text


def test_nudge_that_collects_everything_exits_0(signals) -> None:
    result = result_of(parent(100, [1001]))
    scanner.nudge(result, wait=5)
    assert result.remaining == 0
    assert result.return_code == ExitCode.OK
    assert scan_report.render_summary(result) == "1 of 1 zombie collected; 0 remain."


def test_kill_plan_and_kill(signals) -> None:
    signals["alive"] = {1001, 2001}
    signals["dies"] = {100}
    result = result_of(
        parent(100, [1001]),
        parent(200, [2001], protected="owned by alice, not by you (bob)"),
        parent(300, [3001]),  # the nudge is enough
    )
    scanner.nudge(result, wait=0.01)
    targets, spared = scanner.kill_plan(result)
    assert [p.pid for p in targets] == [100]
    assert [(o.parent.pid, o.why_not) for o in spared] == [
        (200, "owned by alice, not by you (bob)")
    ]
    plan = scan_report.render_plan(targets, spared, signal.SIGTERM)
    assert "SIGCHLD, then SIGTERM -> 100 p100 (root), holding 1 zombie: /bin/p100 --flag" in plan
    assert "not signalled: 200 p200: owned by alice" in plan
    signals["alive"].discard(1001)  # the adopter collects it once its parent died
    round_ = scanner.kill_parents(result, targets, spared, signal.SIGTERM, wait=5)
    assert (100, signal.SIGTERM) in signals["sent"]
    assert all(pid != 200 for pid, _ in signals["sent"])
    killed = next(o for o in round_.outcomes if o.parent.pid == 100)
    assert killed.parent_exited
    assert killed.collected == [1001]
    assert round_.to_dict()["signal"] == "SIGTERM"
    assert result.remaining == 1  # the protected parent's zombie


def test_declined_plan_signals_nothing(signals) -> None:
    signals["alive"] = {1001}
    result = result_of(parent(100, [1001]))
    scanner.nudge(result, wait=0.01)
    targets, spared = scanner.kill_plan(result)
    sent = list(signals["sent"])
    round_ = scanner.decline(result, targets, spared, signal.SIGKILL)
    assert signals["sent"] == sent
    assert round_.confirmed is False
    assert round_.outcomes[0].why_not == "you said no"
    assert round_.outcomes[0].remaining == [1001]


def run_scan(monkeypatch, signals, result, *, answer: bool, reap=False, kill=signal.SIGTERM):
    """Run the command's sequence on ``result``; return each question with
    the signals sent before it was asked, and everything shown."""
    monkeypatch.setattr(scanner, "scan", lambda filters, all_users=False: result)
    asked: list[tuple[str, list[Any]]] = []
    shown: list[str] = []

    def confirm(question: str) -> bool:
        asked.append((question, list(signals["sent"])))
        return answer

    scanner.run(
        scan_report.Filters(), reap=reap, kill=kill, wait=0.01, confirm=confirm,
        show=shown.append,
    )  # fmt: skip
    return asked, shown


def test_kill_parents_asks_before_any_signal_even_the_nudge(monkeypatch, signals) -> None:
    signals["alive"] = {1001}
    signals["dies"] = {100}
    result = result_of(parent(100, [1001]), parent(300, [3001]))
    asked, shown = run_scan(monkeypatch, signals, result, answer=True)
    [(question, sent_before)] = asked
    assert sent_before == []  # nothing at all before the answer
    assert question == "Send SIGCHLD, then SIGTERM if they still hold zombies, to 2 process(es)?"
    assert shown[1].startswith("--kill-parents: the plan (SIGCHLD to each, then SIGTERM")
    # Then the nudge to both, and SIGTERM only to the one it did not clear.
    assert signals["sent"] == [(100, signal.SIGCHLD), (300, signal.SIGCHLD), (100, signal.SIGTERM)]


def test_kill_parents_declined_sends_nothing_at_all(monkeypatch, signals) -> None:
    result = result_of(parent(100, [1001]))
    asked, shown = run_scan(monkeypatch, signals, result, answer=False)
    assert len(asked) == 1
    assert signals["sent"] == []
    assert result.nudge is None
    assert result.kill is not None
    assert result.kill.confirmed is False
    assert result.remaining == 1
    assert any("you said no" in text for text in shown)


def test_reap_alone_asks_nothing(monkeypatch, signals) -> None:
    result = result_of(parent(100, [1001]))
    asked, _shown = run_scan(monkeypatch, signals, result, answer=False, reap=True, kill=None)
    assert asked == []
    assert signals["sent"] == [(100, signal.SIGCHLD)]


# -- small parsers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sig"),
    [
        ("TERM", signal.SIGTERM),
        ("sigkill", signal.SIGKILL),
        ("9", signal.SIGKILL),
        (" hup ", signal.SIGHUP),
    ],
)
def test_parse_signal(text: str, sig: signal.Signals) -> None:
    assert scanner.parse_signal(text) == sig


@pytest.mark.parametrize("text", ["NOPE", "SIG", "99999", ""])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="signal"):
        scanner.parse_signal(text)


def test_resolve_user() -> None:
    assert scanner.resolve_user("root") == 0
    assert scanner.resolve_user("54321") == 54321  # uids need no passwd entry
    with pytest.raises(LookupError, match="no such user"):
        scanner.resolve_user("no-such-user-zw")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250 ms"),
        (12.34, "12.3 s"),
        (250, "4 min 10 s"),
        (3 * 3600 + 300, "3 h 5 min"),
        (2 * 86400 + 4 * 3600, "2 d 4 h"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert scan_report.format_age(seconds) == text


# -- the command's usage errors --------------------------------------------------------


@pytest.fixture
def no_scan(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the CLI scanned or signalled despite a usage error")

    monkeypatch.setattr(scanner, "scan", refuse)
    monkeypatch.setattr(scanner, "nudge", refuse)
    monkeypatch.setattr(_proctl, "send_signal", refuse)


@pytest.mark.usefixtures("no_scan")
@pytest.mark.parametrize(
    "args",
    [
        ["--kill-parents"],  # CliRunner's stdin is not a terminal, and no --yes
        ["--signal", "KILL"],
        ["--kill-parents", "--yes", "--signal", "NOPE"],
        ["--user", "no-such-user-zw"],
        ["--min-count", "-3"],
        ["--parent", str(2**22 + 1)],
        ["--wait", "nan"],
    ],
)
def test_usage_errors_exit_2_before_anything_happens(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["scan", *args], catch_exceptions=False)
    assert result.exit_code == ExitCode.USAGE, result.output


def test_the_command_exits_with_the_result_code(monkeypatch) -> None:
    monkeypatch.setattr(_procfs, "scan_zombies", lambda: ([], 7))
    result = CliRunner().invoke(cli, ["scan", "--json"], catch_exceptions=False)
    assert result.exit_code == ExitCode.OK
    assert json.loads(result.output)["processes"] == 7
