"""Verdicts, exit codes and rendering of run results, and the percentile helpers."""

from __future__ import annotations

import json
import shlex

import jsonschema
import pytest

import zombiewatch
from tests.helpers import run_schema
from zombiewatch import _stats
from zombiewatch import flood as flooder
from zombiewatch._text import figure
from zombiewatch.errors import ExitCode
from zombiewatch.flood import FloodResult
from zombiewatch.monitor import MAX_TIMELINE, MonitorStats, Parent, Sample, Timeline, Zombie
from zombiewatch.report import (
    MAX_LEAK_LINES,
    SCHEMA_VERSION,
    Check,
    Report,
    RunResult,
    command_line,
    render_run,
    shell_join,
)

RUN_KEYS = {
    "mode",
    "expected",
    "verdict",
    "connections",
    "ok",
    "failed",
    "peak_zombies",
    "leaked",
    "lifetime_ms",
    "max_live_children",
    "conn_per_s",
    "interval_ms",
}


def flood(connections=10, ok=None, failures=None):
    ok = connections if ok is None else ok
    failures = failures or {}
    return {
        "connections": connections,
        "ok": ok,
        "failed": sum(failures.values()),
        "failures": failures,
        "conn_per_s": 100.0,
        "latency_ms": {"p50": 1.5, "p99": 4.0, "max": 5.0},
        "connect_ms": {"p50": 0.2, "p99": 0.9, "max": 1.0},
    }


def stats(lifetimes=(0.002, 0.004, 0.010), peak=3, live=5, interval=0.01):
    return MonitorStats(
        samples=42,
        interval=interval,
        peak_zombies=peak,
        max_live_children=live,
        zombies_seen=len(lifetimes),
        lifetimes=list(lifetimes),
    )


def zombies(n):
    return [Zombie(pid=1000 + i, ppid=999, name="python", since=1.0) for i in range(n)]


def run(mode="sigchld", expected="pass", leaked=0, flood_data=None, **kwargs):
    return RunResult(
        mode=mode,
        expected=expected,
        summary=f"summary of {mode}",
        flood=flood_data if flood_data is not None else flood(),
        monitor=stats(),
        leaked=zombies(leaked),
        settle=1.0,
        **{"end": 1.5, **kwargs},
    )


# -- verdicts ----------------------------------------------------------------------


def test_no_leak_is_pass():
    r = run(leaked=0)
    assert r.verdict == "pass"
    assert r.met_expectation
    assert r.measured


def test_a_leak_is_fail():
    r = run(leaked=1)
    assert r.verdict == "fail"
    assert not r.met_expectation


def test_max_leaked_tolerates_that_many():
    assert run(leaked=2, max_leaked=2).verdict == "pass"
    assert run(leaked=3, max_leaked=2).verdict == "fail"


def test_fail_mode_that_fails_meets_its_expectation():
    assert run(mode="none", expected="fail", leaked=10).met_expectation


def test_fail_mode_that_passes_misses_its_expectation():
    assert not run(mode="none", expected="fail", leaked=0).met_expectation


@pytest.mark.parametrize("leaked", [0, 5])
def test_no_expectation_is_always_met(leaked):
    assert run(mode="CMD", expected=None, leaked=leaked).met_expectation


# -- exit codes --------------------------------------------------------------------


def test_all_pass_is_ok():
    report = Report([run("sigchld"), run("wait"), run("pidfd")])
    assert report.return_code is ExitCode.OK


def test_any_leak_is_zombies():
    report = Report([run("sigchld"), run("poll", expected="fail", leaked=1)])
    assert report.return_code is ExitCode.ZOMBIES


def test_check_with_every_expectation_met_is_ok():
    report = Report(
        [run("sigchld"), run("none", expected="fail", leaked=10), run("poll", "fail", leaked=2)],
        check=True,
    )
    assert report.return_code is ExitCode.OK


def test_check_with_a_fail_mode_that_passed_is_zombies():
    report = Report([run("sigchld"), run("none", expected="fail", leaked=0)], check=True)
    assert report.return_code is ExitCode.ZOMBIES


def test_check_with_a_pass_mode_that_leaked_is_zombies():
    report = Report([run("sigchld", leaked=1), run("none", "fail", leaked=10)], check=True)
    assert report.return_code is ExitCode.ZOMBIES


def test_no_connection_got_through_is_not_measured():
    unmeasured = run(flood_data=flood(connections=10, ok=0, failures={"connection refused": 10}))
    assert not unmeasured.measured
    assert Report([unmeasured]).return_code is ExitCode.NOT_MEASURED
    # It wins over zombies and over --check.
    assert Report([run(leaked=3), unmeasured]).return_code is ExitCode.NOT_MEASURED
    assert Report([unmeasured], check=True).return_code is ExitCode.NOT_MEASURED


def test_a_load_stopped_by_max_zombies_before_any_answer_is_measured():
    # The zombies were there: --max-zombies fired before an answer came back.
    r = run(
        leaked=2,
        flood_data=flood(connections=10, ok=0, failures={"stopped": 10}),
        max_zombies=2,
        stopped_early="2 zombies at once",
    )
    assert r.measured
    assert Report([r]).return_code is ExitCode.ZOMBIES


def test_a_watched_program_without_connections_is_measured():
    r = run(mode="CMD", expected=None, flood_data={})
    assert r.measured
    assert Report([r]).return_code is ExitCode.OK


def test_some_failed_connections_count_as_measured_but_fail_the_load_rule():
    r = run(flood_data=flood(connections=10, ok=1, failures={"reply timeout": 9}))
    assert r.measured
    assert r.verdict == "fail"
    assert r.failed_rules == ["load: 9 of 10 connections failed: 9 reply timeout"]
    assert Report([r]).return_code is ExitCode.LOAD_FAILED


@pytest.mark.parametrize(
    ("budget", "percent", "failed", "passes"),
    [(0, False, 1, False), (3, False, 3, True), (3, False, 4, False),
     (10, True, 30, True), (10, True, 31, False)],
)  # fmt: skip
def test_max_failed_is_a_count_or_a_share_of_the_connections(budget, percent, failed, passes):
    data = flood(connections=300, ok=300 - failed, failures={"connection reset": failed})
    r = run(flood_data=data, max_failed=budget, max_failed_percent=percent)
    assert (r.verdict == "pass") is passes
    assert Report([r]).return_code is (ExitCode.OK if passes else ExitCode.LOAD_FAILED)


def test_zombies_leaked_outrank_a_failed_load():
    r = run(leaked=1, flood_data=flood(connections=10, ok=9, failures={"short reply": 1}))
    assert [rule.split(":")[0] for rule in r.failed_rules] == ["leaked", "load"]
    assert Report([r]).return_code is ExitCode.ZOMBIES


def test_a_failed_load_command_and_a_target_that_ended_are_load_rules():
    r = run(mode="CMD", expected=None, flood_data={}, load_status=2)
    assert r.failed_rules == ["load: the load command exited with status 2"]
    r = run(mode="CMD", expected=None, target_ended="exited with status 1")
    assert r.failed_rules == ["target: the program exited with status 1 before the load ended"]
    assert Report([r]).return_code is ExitCode.LOAD_FAILED


def test_with_check_a_failed_load_is_exit_4_not_a_missed_verdict():
    r = run(mode="none", expected="fail", leaked=3,
            flood_data=flood(connections=10, ok=8, failures={"reply timeout": 2}))  # fmt: skip
    assert r.zombie_verdict == "fail"
    assert not r.met_expectation
    assert Report([r], check=True).return_code is ExitCode.LOAD_FAILED
    assert "rule none: load: 2 of 10" in Report([r], check=True).render()


def test_text_json_and_junit_say_the_same_load_rule():
    from zombiewatch.junit import to_junit

    r = run(flood_data=flood(connections=300, ok=271, failures={"connection reset": 29}))
    rule = "load: 29 of 300 connections failed: 29 connection reset"
    report = Report([r])
    assert json.loads(report.to_json())["runs"][0]["failed_rules"] == [rule]
    assert f"rule       {rule}" in report.render()
    xml = to_junit(report)
    assert f'message="{rule}" type="LoadFailed"' in xml
    assert json.loads(report.to_json())["exit_code"] == 4


def test_the_max_zombies_rule_says_the_count_that_stopped_the_load():
    r = run(leaked=0, max_zombies=100, max_zombies_hit=106, stopped_early="106 zombies at once")
    r.monitor.peak_zombies = 165
    assert r.zombie_rules() == ["max-zombies: 106 zombies at once (--max-zombies 100)"]
    assert "stopped    the load early: 106 zombies at once" in render_run(r)


def test_growth_is_per_second_under_a_minute_and_per_completed_connection():
    data = flood(connections=10, ok=4, failures={"stopped": 6})
    r = run(flood_data=data, duration=0.5, zombies_at_load_end=2, stopped_early="x")
    growth = r.growth()
    assert growth["new_per_minute"] is None
    assert growth["net_per_minute"] is None
    assert growth["new_per_second"] == 6.0  # 3 zombies seen in 0.5 s
    assert growth["net_per_connection"] == 0.5  # 2 over the 4 completed, not the 10
    assert "6 new/s, net 4/s, net 0.5 per completed connection" in render_run(r)
    long = run(duration=120, zombies_at_load_end=2)
    assert long.growth()["new_per_minute"] == 1.5
    assert "1.5 new/min" in render_run(long)


def test_return_code_is_an_int_for_sys_exit():
    assert Report([run(leaked=1)]).return_code == 1
    assert isinstance(Report([run()]).return_code, int)


# -- JSON --------------------------------------------------------------------------


def test_to_json_has_the_stable_run_keys():
    report = Report([run("sigchld"), run("none", expected="fail", leaked=2)], check=True)
    data = json.loads(report.to_json())
    assert isinstance(data["runs"], list)
    assert len(data["runs"]) == 2
    for entry in data["runs"]:
        assert entry.keys() >= RUN_KEYS
        assert set(entry["lifetime_ms"]) >= {"p50", "p99", "max"}
    assert data["exit_code"] == 0
    assert data["check"] is True


def test_to_json_values():
    data = json.loads(Report([run("none", expected="fail", leaked=2)]).to_json())
    (entry,) = data["runs"]
    assert entry["mode"] == "none"
    assert entry["expected"] == "fail"
    assert entry["verdict"] == "fail"
    assert entry["met_expectation"] is True
    assert entry["connections"] == 10
    assert entry["ok"] == 10
    assert entry["failed"] == 0
    assert entry["conn_per_s"] == 100.0
    assert entry["peak_zombies"] == 3
    assert entry["leaked"] == 2
    assert entry["max_live_children"] == 5
    assert entry["interval_ms"] == 10.0
    assert entry["lifetime_ms"] == {"p50": 4.0, "p99": 10.0, "max": 10.0}
    assert [z["pid"] for z in entry["leaked_zombies"]] == [1000, 1001]
    assert entry["leaked_zombies"][0]["age_ms"] == 500.0
    assert data["exit_code"] == ExitCode.ZOMBIES


def test_to_json_without_lifetimes_has_nulls():
    r = run()
    r.monitor = stats(lifetimes=())
    (entry,) = json.loads(Report([r]).to_json())["runs"]
    assert entry["lifetime_ms"] == {"p50": None, "p99": None, "max": None}


def test_zombies_per_connection():
    assert run(zombies_at_load_end=5).to_dict()["zombies_per_connection"] == 0.5
    assert run(flood_data={}).to_dict()["zombies_per_connection"] is None


# -- text --------------------------------------------------------------------------


@pytest.mark.parametrize(("leaked", "word"), [(0, "PASS"), (1, "FAIL")])
def test_render_one_run_mentions_the_verdict(leaked, word):
    text = Report([run(leaked=leaked)]).render()
    assert f"verdict    {word}" in text
    assert "sigchld" in text


def test_render_one_run_lists_leaked_zombies_and_failures():
    r = run(leaked=12, flood_data=flood(connections=10, ok=8, failures={"reply timeout": 2}))
    text = Report([r]).render()
    assert "2 reply timeout" in text
    # One line for the one parent: its count and its first five pids.
    assert text.count("leaked     ") == 1
    assert (
        "leaked     12 zombies (python) of parent 999: pids 1000, 1001, 1002, 1003, 1004"
        " and 7 more, zombies for 500 ms"
    ) in text


def test_render_table_has_each_mode_and_verdict():
    report = Report([run("sigchld"), run("none", expected="fail", leaked=3)], check=True)
    lines = report.render().splitlines()
    assert lines[0].split()[:3] == ["mode", "expected", "verdict"]
    assert lines[1].split()[:4] == ["sigchld", "PASS", "PASS", "yes"]
    assert lines[2].split()[:4] == ["none", "FAIL", "FAIL", "yes"]
    assert lines[-1] == "check: every mode met its expected verdict"


def test_render_table_names_the_modes_that_missed():
    report = Report([run("sigchld", leaked=1), run("none", expected="fail")], check=True)
    text = report.render()
    assert "check: sigchld, none missed the expected verdict" in text
    assert " NO " in text


def test_render_mentions_skipped_modes():
    report = Report([run()], skipped={"pidfd": "needs Linux 5.3+"})
    assert "skipped pidfd: needs Linux 5.3+" in report.render()


def test_render_with_empty_flood_data():
    text = Report([run(mode="CMD", expected=None, flood_data={})]).render()
    assert "verdict    PASS" in text


# -- percentiles -------------------------------------------------------------------


def test_percentile_of_nothing_is_none():
    assert _stats.percentile([], 50) is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([3, 1, 2], 0, 1),
        ([3, 1, 2], 50, 2),
        ([3, 1, 2], 100, 3),
        ([1, 2, 3, 4], 50, 2),  # nearest rank: ceil(0.5 * 4) = 2nd value
        ([1, 2, 3, 4], 75, 3),
        ([1, 2, 3, 4], 76, 4),
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        (list(range(1, 11)), 95, 10),
        (list(range(1, 11)), 1, 1),
    ],
)
def test_percentile_nearest_rank(values, q, expected):
    assert _stats.percentile(values, q) == expected


def test_percentile_reports_an_observed_value():
    values = [0.5, 0.1, 0.9, 0.3]
    for q in range(0, 101):
        assert _stats.percentile(values, q) in values


def test_percentile_does_not_reorder_its_input():
    values = [3, 1, 2]
    _stats.percentile(values, 50)
    assert values == [3, 1, 2]


@pytest.mark.parametrize(("q", "n"), [(7, 100), (14, 50), (28, 25), (55, 100)])
def test_percentile_rank_is_exact_for_whole_number_ranks(q, n):
    # Regression: ceil(q / 100 * n) made 7 / 100 * 100 == 7.000000000000001, rank 8.
    values = list(range(1, n + 1))
    assert _stats.percentile(values, q) == q * n // 100


def test_percentile_rank_matches_integer_arithmetic():
    for n in range(1, 201):
        values = list(range(1, n + 1))
        for q in range(0, 101):
            assert _stats.percentile(values, q) == max(1, -(-q * n // 100)), (q, n)


def test_summary_ms_converts_seconds_to_milliseconds():
    assert _stats.summary_ms([0.001, 0.002, 0.010]) == {"p50": 2.0, "p99": 10.0, "max": 10.0}


def test_summary_ms_of_nothing_is_all_none():
    assert _stats.summary_ms([]) == {"p50": None, "p99": None, "max": None}


def test_summary_ms_rounds_to_microseconds():
    assert _stats.summary_ms([0.0012344]) == {"p50": 1.234, "p99": 1.234, "max": 1.234}


def test_lifetime_ms_uses_summary_ms():
    assert stats(lifetimes=(0.003, 0.001)).lifetime_ms() == _stats.summary_ms([0.003, 0.001])


# -- how the tree was observed ------------------------------------------------------


def events_stats():
    s = MonitorStats(method="events", interval=0.01)
    for seconds in (0.00005, 0.0004, 0.0006, 0.003):
        s.add_lifetime(seconds)
    s.zombies_seen = 5
    s.unwatched, s.unwatched_bound = 1, 0.0007
    return s


def test_a_sampled_run_says_its_interval_and_has_no_histogram():
    text = render_run(run())
    assert "(sampled every 10 ms," in text
    assert "histogram" not in text
    assert run().to_dict()["observe"]["method"] == "sample"


def test_an_event_run_says_what_was_exact_and_shows_the_histogram():
    r = run()
    r.monitor = events_stats()
    d = r.to_dict()["observe"]
    assert (d["method"], d["children_exited"], d["exact"], d["unwatched"]) == ("events", 5, 4, 1)
    assert d["unwatched_within_ms"] == 0.7
    assert d["histogram"] == {
        "<0.1ms": 1, "<1ms": 2, "<10ms": 1, "<100ms": 0, "<1s": 0, "<10s": 0, ">=10s": 0,
    }  # fmt: skip
    text = render_run(r)
    assert "exact, from kernel events: 4 of 5 exited children reaped and timed" in text
    assert "1 reaped before they could be watched, each within 0.7 ms of its exit" in text
    assert "histogram  zombie lifetimes: <0.1ms 1, <1ms 2, <10ms 1" in text
    assert "seen 5 (every child that exited)" in text


# -- how figures and command lines read (#20) --------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (18.442, "18.4"),  # the flooder printed 18.442 where the report printed 18.4
        (695.563, "696"),  # growth read "695.563 new/s"
        (1234.6, "1235"),  # never in e-notation
        (0.0284, "0.0284"),
        (80.0, "80"),
        (99.96, "100"),
        (0.5, "0.5"),
        (0, "0"),
        (-3.14159, "-3.14"),
        (None, "-"),
    ],
)
def test_a_figure_has_three_significant_digits(value, text):
    assert figure(value) == text


def test_the_flooder_and_the_report_print_a_latency_alike():
    result = FloodResult(connections=2, concurrency=2, ok=2, elapsed=0.1)
    result.latencies = [0.018442, 0.0958765]  # p50 18.442 ms, p99 95.877 ms
    data = result.to_dict()
    flooder_line = flooder._summary_line(result, data)
    report_line = render_run(run(flood_data=data))
    for said in ("latency p50 18.4 ms", "p99 95.9 ms"):
        assert said in flooder_line
        assert said in report_line
    assert "18.442" not in flooder_line + report_line


def test_growth_reads_as_three_significant_digits():
    r = run(duration=3 / 695.563, zombies_at_load_end=3)  # 3 zombies seen in 4.3 ms
    assert r.growth()["new_per_second"] == 695.563
    assert "growth     696 new/s, net 696/s" in render_run(r)


SERVER_ARGV = ["/venv/bin/python3", "-m", "zombiewatch.server", json.dumps({"mode": "sigchld"})]


def test_the_built_in_server_is_named_by_its_mode():
    assert command_line(SERVER_ARGV) == "zombiewatch server, mode sigchld"
    assert command_line(SERVER_ARGV[:3]) == "zombiewatch server"
    assert command_line([*SERVER_ARGV[:3], "not json"]) == "zombiewatch server"


def test_the_report_names_the_built_in_server_wherever_it_shows_a_command():
    r = run(leaked=2)
    r.monitor.parents[999] = Parent(999, "python3", SERVER_ARGV, zombies_seen=2)
    r.monitor.orphaned_by[999, False] = 1
    text = render_run(r)
    assert "parent     pid 999 zombiewatch server, mode sigchld: 2 zombie(s) seen" in text
    assert "of parent 999 zombiewatch server, mode sigchld: pids 1000, 1001" in text
    assert "orphaned   1 by pid 999 zombiewatch server, mode sigchld" in text
    assert "child_d" not in text
    assert "-m zombiewatch.server" not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["server.py", "--name", "my app", "--quote", "it's"],
        ["sh", "-c", "echo $HOME; exit 3"],
        ["python3", "-c", "import os\nprint('x')\tend"],
        ["plain", "", "*"],
    ],
)
def test_command_lines_are_shell_quoted_on_one_line(argv):
    text = shell_join(argv)
    assert "\n" not in text
    if all(arg.isprintable() for arg in argv):
        assert shlex.split(text) == argv  # the e2e test runs the $'...' form through bash
    assert command_line(argv) == text


def test_a_parent_command_line_is_quoted_in_the_report():
    r = run(leaked=1)
    r.monitor.parents[999] = Parent(999, "sh", ["sh", "-c", "sleep 1 & wait"], zombies_seen=1)
    assert "parent     pid 999 sh -c 'sleep 1 & wait': 1 zombie(s) seen" in render_run(r)


def test_leaked_zombies_are_one_line_per_parent_and_way_left():
    r = run()
    r.leaked = [
        Zombie(pid=2000 + i, ppid=7, name="worker", since=1.0 - i / 100) for i in range(8)
    ] + [
        Zombie(pid=3000, ppid=8, name="sh", since=1.0),
        Zombie(pid=3001, ppid=8, name="sh", since=1.0, held=0.25),
        Zombie(pid=3002, ppid=8, name="cat", since=1.0, held=0.4),
    ]
    r.monitor.parents[7] = Parent(7, "app", ["app", "--serve"], zombies_seen=8)
    lines = [line for line in render_run(r).splitlines() if line.startswith("leaked")]
    assert lines == [
        "leaked     8 zombies (worker) of parent 7 app --serve: pids 2000, 2001, 2002, 2003,"
        " 2004 and 3 more, zombies for 500 to 570 ms",
        "leaked     2 zombies (sh, cat) of parent 8: pids 3001, 3002, held 250 to 400 ms and"
        " never collected by it: it exited and an adopter collected them",
        "leaked     1 zombie (sh) of parent 8: pid 3000, a zombie for 500 ms",
    ]


def test_leak_lines_stop_at_ten_parents_and_count_the_rest():
    r = run()
    r.leaked = [Zombie(pid=5000 + i, ppid=100 + i, name="w", since=1.0) for i in range(12)]
    r.leaked_unlisted = 3
    lines = [line for line in render_run(r).splitlines() if line.startswith("leaked")]
    assert len(lines) == MAX_LEAK_LINES + 1
    assert lines[-1] == "leaked     ... and 5 more"  # 2 parents left out, 3 counted only


def test_watch_says_no_orphans_at_a_stop_it_never_made():
    assert "0 when the target stopped" in render_run(run(kind="run"))
    text = render_run(run(kind="watch", flood_data={}))
    assert "children   max live 5; orphans escaped 0 while watched" in text
    assert "when the target stopped" not in text


LISTEN = {"overflows": 2, "drops": 3}


@pytest.mark.parametrize(
    ("flood_data", "load_status", "shown"),
    [
        pytest.param(None, None, True, id="flood"),
        pytest.param({}, 0, True, id="load-command"),
        pytest.param({}, None, False, id="no-load"),
    ],
)
def test_the_host_listen_queue_line_needs_a_network_load(flood_data, load_status, shown):
    r = run(flood_data=flood_data, load_status=load_status, listen_queue=LISTEN)
    assert ("listen     queue overflows 2, drops 3" in render_run(r)) == shown
    assert r.to_dict()["listen_queue"] == {**LISTEN, "scope": "host"}  # JSON keeps the counters


def table(width):
    names = ["none", "sigchld-once", "reaper-thread", "wait", "double-fork"]
    return Report([run(name, leaked=i, escaped=100 * i) for i, name in enumerate(names)], True)


def test_the_table_fits_the_width_it_is_given():
    full = table(None).render().splitlines()
    assert len(full[0]) > 80  # every column: more than a terminal's 80
    assert full[0].split() == [
        "mode", "expected", "verdict", "met", "ok/conns", "conn/s", "peak", "leaked",
        "escaped", "live", "max", "lifetime", "p50/p99/max", "ms",
    ]  # fmt: skip
    for width in (80, 60, 45):
        lines = table(width).render(width=width).splitlines()
        assert lines[0].split()[:3] == ["mode", "expected", "verdict"]
        assert [line.split()[0] for line in lines[1:6]] == [
            "none", "sigchld-once", "reaper-thread", "wait", "double-fork",
        ]  # fmt: skip
        note = [line for line in lines[6:] if not line.startswith("check:")]
        assert " ".join(note).startswith(f"(not shown in {width} columns: live max, escaped")
        assert all(len(line) <= width for line in lines[:6] + note), (width, lines)
        assert "leaked" in lines[0].split()  # the verdict's columns always stay
    wide = table(200).render(width=200).splitlines()
    assert wide[0] == full[0]
    assert not any(line.startswith("(not shown") for line in wide)


def test_the_table_keeps_the_verdict_columns_even_when_they_do_not_fit():
    lines = table(20).render(width=20).splitlines()
    assert lines[0].split() == ["mode", "expected", "verdict", "met", "leaked"]


# -- JSON: version, timeline, schema (#20) ---------------------------------------


def timeline_stats(n, limit=MAX_TIMELINE):
    s = stats()
    s.timeline = Timeline(limit)
    for i in range(n):
        point = Sample(t=100.0 + i * 0.01, live=i % 7, zombies=i % 3)
        s.timeline.append(point)
        s.last = point
    s.samples = n
    return s


def test_json_says_its_schema_version_and_the_tool_version():
    data = json.loads(Report([run()]).to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["zombiewatch_version"] == zombiewatch.__version__


def test_json_has_the_timeline_from_the_run_start():
    r = run(end=100.05, load_end=100.03, duration=0.03)
    r.monitor = timeline_stats(5)
    timeline = r.to_dict()["timeline"]
    assert timeline["t_s"] == [0.0, 0.01, 0.02, 0.03, 0.04]
    assert timeline["live"] == [0, 1, 2, 3, 4]
    assert timeline["zombies"] == [0, 1, 2, 0, 1]
    assert timeline["every"] == 1
    assert (timeline["load_start_s"], timeline["load_end_s"], timeline["end_s"]) == (
        0.0, 0.03, 0.05,
    )  # fmt: skip
    # A load that started before the first sample: 0 is the load's start.
    r.duration = 0.04
    assert r.to_dict()["timeline"]["t_s"][:2] == [0.01, 0.02]
    assert r.to_dict()["timeline"]["load_start_s"] == 0.0


def test_json_timeline_is_thinned_as_kept_and_ends_with_the_last_sample():
    r = run(end=200.0, load_end=150.0, duration=50.0)
    r.monitor = timeline_stats(1001, limit=100)
    timeline = r.to_dict()["timeline"]
    assert len(timeline["t_s"]) <= 101
    assert timeline["every"] == 16  # the monitor halved its list four times
    assert timeline["t_s"][-1] == 10.0  # the last sample, which thinning had dropped
    assert timeline["t_s"] == sorted(timeline["t_s"])
    assert len(timeline["live"]) == len(timeline["zombies"]) == len(timeline["t_s"])


def test_json_writes_each_timeline_array_on_one_line():
    r = run(end=100.05, load_end=100.03, duration=0.04)
    r.monitor = timeline_stats(50)
    r.mode = 't_s "timeline-0-t_s" [1]'  # text like a placeholder stays as it was
    text = Report([r, run()]).to_json()
    data = json.loads(text)
    assert data["runs"][0]["mode"] == r.mode
    assert data["runs"][0]["timeline"] == r.to_dict()["timeline"]
    lines = text.splitlines()
    assert sum(line.lstrip().startswith('"t_s": [') for line in lines) == 2
    assert any(line.strip() == '"t_s": [],' for line in lines)  # the run without samples
    assert len(lines) < 250  # 150 numbers, not one line each


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(run_schema())


def test_scripted_reports_validate_against_the_schema_and_it_names_every_key():
    events = run(leaked=2, kind="run", listen_queue=LISTEN)
    events.monitor = events_stats()
    failed = run(flood_data=flood(connections=10, ok=7, failures={"timeout": 3}), kind="watch")
    failed.checks = [Check("orphans", "fail", "2 orphans", {"orphaned": 2})]
    report = Report([run(), events, failed], skipped={"pidfd": "no pidfd"})
    data = json.loads(report.to_json())
    schema = run_schema()
    jsonschema.validate(data, schema)
    assert set(data) == set(schema["properties"])
    for entry in data["runs"]:
        assert set(entry) == set(schema["$defs"]["run"]["properties"])
        assert set(entry) == set(schema["$defs"]["run"]["required"])


def test_the_schema_refuses_what_the_format_does_not_allow():
    data = json.loads(Report([run()]).to_json())
    for broken in (
        {**data, "schema_version": 2},
        {**data, "runs": [{**data["runs"][0], "verdict": "maybe"}]},
        {**data, "runs": [{**data["runs"][0], "kind": "scan"}]},
        {k: v for k, v in data.items() if k != "zombiewatch_version"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, run_schema())
