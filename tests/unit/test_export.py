"""`zombiewatch export` without processes: the metrics it exposes, parsed back
with ``prometheus_client.parser``; the top-N grouping; a failing scan; the
lifetime counting from scripted kernel events; options and usage errors.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import zombiewatch
from tests.scripted import ScriptedConnector
from zombiewatch import __version__, _cnproc, export, lifetimes, scan_report
from zombiewatch.cli import cli
from zombiewatch.errors import ExitCode


def parent(pid: int, count: int, name: str = "python3", user: str = "root", age: float = 5.0):
    return scan_report.ZombieParent(
        pid=pid,
        start_ticks=pid,
        uid=0,
        user=user,
        name=name,
        cmdline=[name],
        zombies=[scan_report.ScannedZombie(pid * 100 + i, "w", 1, age + i) for i in range(count)],
    )


def result(*parents: scan_report.ZombieParent, processes: int = 500) -> scan_report.ScanResult:
    return scan_report.ScanResult(
        parents=list(parents),
        total_zombies=sum(p.count for p in parents),
        processes=processes,
        scan_time=0.0125,
        filters=scan_report.Filters(),
    )


def scrape(collector: export.ZombieCollector) -> dict[str, Any]:
    """One scrape as Prometheus reads it: {family name: family}."""
    text = generate_latest(export.registry_for(collector)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def collector_of(*scans: Any, watcher: Any = None, top: int = 10, by_pid: bool = False):
    """A collector whose scans return (or raise) ``scans`` in turn."""
    queue = list(scans)
    logged: list[str] = []

    def scan() -> scan_report.ScanResult:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        return item

    state = export.ScanState(method="scan", top=top, by_pid=by_pid)
    return export.ZombieCollector(state, watcher, scan=scan, log=logged.append), logged


# -- the exposition ----------------------------------------------------------------


def test_zombies_by_parent_name_and_user_with_prometheus_types_and_units() -> None:
    found = result(parent(10, 7), parent(11, 2, name="bash", user="alice", age=700.0))
    metrics = scrape(collector_of(found)[0])
    zombies = metrics["zombiewatch_zombies"]
    assert zombies.type == "gauge"
    assert samples(zombies) == {
        (("parent", "python3"), ("user", "root")): 7,
        (("parent", "bash"), ("user", "alice")): 2,
        (("parent", "other"), ("user", "other")): 0,
    }
    oldest = samples(metrics["zombiewatch_oldest_zombie_age_seconds"])
    assert oldest[(("parent", "python3"), ("user", "root"))] == 11.0  # 5 + 6
    assert oldest[(("parent", "bash"), ("user", "alice"))] == 701.0
    assert samples(metrics["zombiewatch_zombie_parents"]) == {(): 2}
    assert samples(metrics["zombiewatch_scanned_processes"]) == {(): 500}
    assert samples(metrics["zombiewatch_scan_duration_seconds"]) == {(): 0.0125}
    assert samples(metrics["zombiewatch_scan_success"]) == {(): 1}
    assert metrics["zombiewatch_scans"].type == "counter"
    assert samples(metrics["zombiewatch_scans"], "_total") == {(): 1}
    assert samples(metrics["zombiewatch_scan_errors"], "_total") == {(): 0}
    # The text format has no info type: an info metric is a gauge of 1 named *_info.
    info = metrics["zombiewatch_info"]
    assert info.type == "gauge"
    assert samples(info) == {(("method", "scan"), ("version", __version__)): 1}
    # Without events, nothing pretends to count exits.
    assert "zombiewatch_zombies_created" not in metrics
    assert "zombiewatch_zombie_lifetime_seconds" not in metrics
    # The exporter's own costs, for the soak.
    assert "process_resident_memory_bytes" in metrics


def test_no_pid_label_unless_asked() -> None:
    found = result(parent(10, 3), parent(12, 4))
    plain = samples(scrape(collector_of(found)[0])["zombiewatch_zombies"])
    assert plain[(("parent", "python3"), ("user", "root"))] == 7  # two processes, one row
    by_pid = samples(scrape(collector_of(found, by_pid=True)[0])["zombiewatch_zombies"])
    assert by_pid[(("parent", "python3"), ("pid", "10"), ("user", "root"))] == 3
    assert by_pid[(("parent", "python3"), ("pid", "12"), ("user", "root"))] == 4


def test_top_n_keeps_the_biggest_and_sums_the_rest_under_other() -> None:
    parents = [parent(20 + i, i + 1, name=f"p{i}") for i in range(6)]  # p5 holds 6 ... p0 1
    groups = export.group_parents(parents, top=2)
    assert [(g.parent, g.zombies) for g in groups] == [("p5", 6), ("p4", 5), ("other", 10)]
    assert groups[-1].oldest_age == max(p.oldest_age_max for p in parents[:4])
    assert sum(g.zombies for g in groups) == sum(p.count for p in parents)
    # Ties are broken by name, so the series do not flap between scrapes.
    tied = export.group_parents([parent(1, 2, name="b"), parent(2, 2, name="a")], top=1)
    assert [g.parent for g in tied] == ["a", "other"]


def test_a_clean_host_still_exports_the_other_row() -> None:
    zombies = samples(scrape(collector_of(result())[0])["zombiewatch_zombies"])
    assert zombies == {(("parent", "other"), ("user", "other")): 0}


# -- a scan that fails -------------------------------------------------------------


def test_a_failing_scan_is_an_error_metric_and_one_log_line() -> None:
    broken = PermissionError(13, "Permission denied", "/proc")
    collector, logged = collector_of(broken, broken, result(parent(10, 1)))
    first = scrape(collector)
    assert samples(first["zombiewatch_scan_success"]) == {(): 0}
    assert samples(first["zombiewatch_scan_errors"], "_total") == {(): 1}
    # No stale or made-up counts while the scan fails.
    assert "zombiewatch_zombies" not in first
    assert "zombiewatch_oldest_zombie_age_seconds" not in first
    second = scrape(collector)
    assert samples(second["zombiewatch_scan_errors"], "_total") == {(): 2}
    assert len(logged) == 1, "the same failure is logged once"
    assert "scan failed: PermissionError" in logged[0]
    third = scrape(collector)
    assert samples(third["zombiewatch_scan_success"]) == {(): 1}
    assert samples(third["zombiewatch_scans"], "_total") == {(): 3}
    assert logged[1] == "scan works again"


def test_a_scan_that_finds_no_process_is_a_failure_not_zero_zombies() -> None:
    collector, logged = collector_of(result(processes=0))
    metrics = scrape(collector)
    assert samples(metrics["zombiewatch_scan_success"]) == {(): 0}
    assert "zombiewatch_zombies" not in metrics
    assert "no process" in logged[0]


# -- lifetimes from kernel events ------------------------------------------------


def exit_event(pid: int, tgid: int, ts: int) -> tuple[int, int, int, int, int, int, int, int]:
    return (_cnproc.EXIT, ts, pid, tgid, 0, 17, 1, 1)


def gone_pid() -> int:
    """A pid no process has now."""
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open")
def test_exits_already_collected_count_with_their_bound_in_the_histogram() -> None:
    conn = ScriptedConnector()
    watcher = lifetimes.ExitWatcher(connector=conn)  # type: ignore[arg-type]
    try:
        pid = gone_pid()
        now = time.monotonic_ns()
        conn.events = [
            exit_event(pid, pid, now - 5_000_000_000),  # exited 5 s ago, collected since
            exit_event(pid + 1, pid, now),  # a thread of it: not a process exit
            (_cnproc.FORK, now, 1, 1, pid, pid, 0, 0),  # forks are ignored
        ]
        watcher.poll(0)
        counts = watcher.counts()
        assert (counts.created, counts.collected, counts.unwatched) == (1, 1, 1)
        # 5 s and a little: in the (1, 10] bucket, an upper bound.
        assert counts.buckets[lifetimes.BUCKETS.index(10.0)] == 1
        assert counts.lifetime_sum >= 5.0
        state = export.ScanState(method="events", counts=counts)
        metrics = {
            f.name: f
            for f in text_string_to_metric_families(
                generate_latest(_Fixed(export.families(state))).decode()
            )
        }
        hist = metrics["zombiewatch_zombie_lifetime_seconds"]
        assert hist.type == "histogram"
        buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
        assert buckets["1.0"] == 0
        assert buckets["10.0"] == 1
        assert buckets["+Inf"] == 1
        assert samples(metrics["zombiewatch_zombies_created"], "_total") == {(): 1}
        assert samples(metrics["zombiewatch_zombies_collected"], "_total") == {(): 1}
        assert samples(metrics["zombiewatch_zombies_collected_unwatched"], "_total") == {(): 1}
    finally:
        watcher.close()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open")
def test_untracked_zombies_are_collected_when_a_scan_no_longer_finds_them(monkeypatch) -> None:
    conn = ScriptedConnector()
    watcher = lifetimes.ExitWatcher(connector=conn)  # type: ignore[arg-type]
    try:

        def no_descriptors(pid: int) -> int:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(os, "pidfd_open", no_descriptors)
        now = time.monotonic_ns()
        conn.events = [exit_event(70001, 70001, now), exit_event(70002, 70002, now)]
        watcher.poll(0)
        assert watcher.counts().collected == 0
        watcher.reconcile([70002])  # 70001 is no longer a zombie
        counts = watcher.counts()
        assert (counts.created, counts.collected, counts.unwatched) == (2, 1, 1)
        watcher.reconcile([])
        assert watcher.counts().collected == 2
    finally:
        watcher.close()


class _Fixed:
    """A collector of fixed families."""

    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        return iter(self.metrics)


# -- options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9577", ("127.0.0.1", 9577)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9577", ("::1", 9577)),
        (":9100", ("127.0.0.1", 9100)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert export.parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9577", "host:", "host:x", "h:65536", "::1:9577", ""])
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|brackets"):
        export.parse_listen(value)


def test_loopback_is_told_from_other_addresses() -> None:
    assert export.is_loopback("127.0.0.1")
    assert export.is_loopback("::1")
    assert not export.is_loopback("0.0.0.0")


def invoke(*args: str):
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nope"], "is not HOST:PORT"),
        (["--textfile", "/nonexistent/dir"], "is not a writable directory"),
        (["--textfile", "/tmp", "--listen", "127.0.0.1:1"], "not both"),
        (["--every", "5"], "--every is the interval of --textfile"),
        (["--top", "0"], "--top"),
        (["--observe", "sometimes"], "--observe"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    outcome = invoke(*args)
    assert outcome.exit_code == ExitCode.USAGE
    assert message in outcome.output


def test_without_the_extra_export_says_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "zombiewatch.export")
    monkeypatch.delattr(zombiewatch, "export")  # as in a fresh process
    from zombiewatch.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["export"])
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install prometheus_client" in err
