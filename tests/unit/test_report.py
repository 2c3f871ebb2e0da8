"""Verdicts, exit codes and rendering of run results, and the percentile helpers."""

from __future__ import annotations

import json

import pytest

from zombiewatch import _stats
from zombiewatch.errors import ExitCode
from zombiewatch.monitor import MonitorStats, Zombie
from zombiewatch.report import Report, RunResult, render_run

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
        end=1.5,
        **kwargs,
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
    assert text.count("leaked     pid") == 10
    assert "and 2 more" in text


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
