"""The ground-truth record: its format, and how it is set beside the monitor
(no forking; tests/e2e/test_events.py runs it on the real server)."""

from __future__ import annotations

import os
import time

import pytest

from zombiewatch import _record

MS = 1_000_000  # ns


def test_lines_are_appended_and_read_back(tmp_path):
    path = str(tmp_path / "r")
    recorder = _record.Recorder(path)
    recorder.note(b"F", 41)
    recorder.note(b"X", 41)
    recorder.note(b"R", 41)
    os.close(recorder.fd)
    times = _record.read(path)[41]
    assert times.keys() == {"F", "X", "R"}
    assert times["F"] <= times["X"] <= times["R"]


def test_compare_splits_the_error_into_exit_and_reap():
    truth = {
        1: {"F": 0, "X": 10 * MS, "R": 15 * MS},
        2: {"F": 0, "X": 10 * MS, "R": 12 * MS},
        3: {"F": 0, "X": 10 * MS, "R": 11 * MS},  # never seen by the monitor
        4: {"F": 0},  # still running at the end: incomplete
    }
    observed = {
        1: [(10 * MS + 400_000, 15 * MS + 20_000, True)],  # exit seen 400 us late
        2: [(10 * MS, 12 * MS, False)],  # reaped before it could be watched
    }
    result = _record.compare(truth, observed)
    assert (result["children"], result["complete"]) == (4, 3)
    assert (result["observed"], result["missed"]) == (2, 2)
    assert (result["exact"], result["unwatched"]) == (1, 1)
    assert result["exit_after_x_us"] == {"p50": 400.0, "p99": 400.0, "max": 400.0}
    assert result["reap_error_us"] == {"p50": 20.0, "p99": 20.0, "max": 20.0}
    assert result["error_us"] == {"p50": 380.0, "p99": 380.0, "max": 380.0}


def test_a_sampled_run_gets_the_records_own_figures_only():
    truth = {1: {"F": 0, "X": 1 * MS, "R": 3 * MS}}
    result = _record.compare(truth, None)
    assert result == {
        "children": 1,
        "complete": 1,
        "lifetime_us": {"p50": 2000.0, "p99": 2000.0, "max": 2000.0},
    }


def test_the_recording_waitpid_notes_what_it_returns(tmp_path, monkeypatch):
    path = str(tmp_path / "r")
    recorder = _record.Recorder(path)
    results = iter([(77, 0, (3_000_000, 40_000), 123), (0, 0, None, 0)])
    monkeypatch.setattr(os, "waitpid", os.waitpid)  # put back after the test
    # Scripted: the reap through ctypes is tested on real children in
    # tests/e2e/test_record_reap.py.
    monkeypatch.setattr(_record, "_reaper", lambda: lambda pid, options: next(results))
    recorder.wrap_waitpid()
    assert os.waitpid(-1, os.WNOHANG) == (77, 0)
    assert os.waitpid(-1, os.WNOHANG) == (0, 0)  # pid 0: nothing reaped, nothing noted
    os.close(recorder.fd)
    children = _record.read(path)
    assert list(children) == [77]
    assert children[77] == {"R": 123, "Rcpu": 3_000_000, "Rwait": 40_000}


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="no /proc schedstat")
def test_the_exit_line_carries_the_childs_cpu_so_far(tmp_path):
    path = str(tmp_path / "r")
    recorder = _record.Recorder(path)
    recorder.note_exit()
    assert _record.read(path) == {}  # left in shared memory, for the server
    recorder.flush()
    os.close(recorder.fd)
    times = _record.read(path)[os.getpid()]
    assert times.keys() == {"X", "Xcpu", "Xwait"}  # from /proc/self/schedstat
    assert 0 < times["Xcpu"] <= time.process_time_ns()
    assert times["Xwait"] >= 0


def test_the_teardowns_cpu_moves_the_records_zombie_birth():
    # Last line at 10 ms, then 250 us on a CPU and 50 waiting for one,
    # tearing down: a zombie from 10.3 ms, reaped at 15 ms. The monitor saw
    # its exit 350 us after the last line (50 after the teardown) and the
    # reap 10 us late.
    times = {
        "F": 0,
        "X": 10 * MS, "Xcpu": 2 * MS, "Xwait": 1 * MS,
        "R": 15 * MS, "Rcpu": 2 * MS + 250_000, "Rwait": 1 * MS + 50_000,
    }  # fmt: skip
    assert _record.zombie_from(times) == 10 * MS + 300_000
    result = _record.compare({1: times}, {1: [(10 * MS + 350_000, 15 * MS + 10_000, True)]})
    one = {key: value["p50"] for key, value in result.items() if isinstance(value, dict)}
    assert one == {
        "lifetime_us": 4700.0,
        "error_us": 40.0,  # observed 4,660 against 4,700
        "error_from_last_line_us": 340.0,  # against 5,000
        "exit_after_x_us": 350.0,
        "teardown_us": 300.0,
        "exit_after_teardown_us": 50.0,
        "reap_error_us": 10.0,
    }


def test_a_record_without_cpu_times_counts_from_the_last_line():
    times = {"F": 0, "X": 10 * MS, "R": 12 * MS}
    assert _record.zombie_from(times) == 10 * MS
    result = _record.compare({2: times}, {2: [(10 * MS + 200_000, 12 * MS, True)]})
    assert result["error_us"] == result["error_from_last_line_us"]
    assert result["teardown_us"] == {"p50": 0.0, "p99": 0.0, "max": 0.0}


def test_a_zombie_is_never_born_after_its_reap():
    # A zombie preempted by its woken parent waits after it became one:
    # that wait counts in Rwait, and must not put its birth past its reap.
    times = {"F": 0, "X": 10 * MS, "Xcpu": 0, "Xwait": 0, "R": 11 * MS, "Rcpu": 0, "Rwait": 5 * MS}
    assert _record.zombie_from(times) == 11 * MS
