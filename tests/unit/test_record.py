"""The ground-truth record: its format, and how it is set beside the monitor
(no forking; tests/e2e/test_events.py runs it on the real server)."""

from __future__ import annotations

import os

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
    results = iter([(77, 0), (0, 0)])
    monkeypatch.setattr(os, "waitpid", lambda pid, options: next(results))
    recorder.wrap_waitpid()
    assert os.waitpid(-1, os.WNOHANG) == (77, 0)
    assert os.waitpid(-1, os.WNOHANG) == (0, 0)  # pid 0: nothing reaped, nothing noted
    os.close(recorder.fd)
    children = _record.read(path)
    assert list(children) == [77]
    assert list(children[77]) == ["R"]
