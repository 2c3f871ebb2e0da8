"""Reaping logic fed with scripted ``os.waitpid`` results (no forking).

As in gunicorn's tests/test_arbiter.py, ``waitpid`` is a mock whose
``side_effect`` lists what each call returns or raises, including
``ChildProcessError`` and pids nobody knows about.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Any
from unittest import mock

import pytest

from zombiewatch import modes
from zombiewatch.modes import base

WNOHANG_CALL = mock.call(-1, os.WNOHANG)
ECHILD = ChildProcessError(errno.ECHILD, "No child processes")


@pytest.fixture
def fake_waitpid(monkeypatch):
    """Install a scripted ``waitpid`` everywhere the modes can reach one:
    every mode, ``reap_pending`` and ``reap_all`` included, looks up
    ``os.waitpid`` when it runs."""

    def install(*results):
        fake = mock.Mock(side_effect=list(results))
        monkeypatch.setattr(os, "waitpid", fake)
        return fake

    return install


@pytest.fixture
def keep_sigchld():
    """Restore the SIGCHLD disposition after a hook that changes it."""
    saved = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, saved)


class FakeServer:
    """The hooks a mode may call on the server, recorded."""

    def __init__(self, pids=()):
        self.pids = list(pids)
        self.forks = []
        self.watched = {}
        self.unwatched = []
        self.served = []

    def fork_worker(self, conn, work=None):
        self.forks.append((conn, work))
        return self.pids.pop(0)

    def serve_worker(self, conn):
        self.served.append(conn)

    def watch_fd(self, fd, callback):
        self.watched[fd] = callback

    def unwatch_fd(self, fd):
        self.unwatched.append(fd)
        del self.watched[fd]


def make(name, server=None):
    reaper: Any = modes.get(name)()
    reaper.server = server if server is not None else FakeServer()
    return reaper


# -- reap_pending / reap_all -------------------------------------------------


def test_reap_pending_loops_until_pid_zero():
    waitpid = mock.Mock(side_effect=[(101, 0), (102, 0), (103, 256), (0, 0)])
    assert base.reap_pending(waitpid=waitpid) == 3
    assert waitpid.call_args_list == [WNOHANG_CALL] * 4


def test_reap_pending_stops_at_child_process_error():
    waitpid = mock.Mock(side_effect=[(101, 0), (102, 0), ECHILD])
    assert base.reap_pending(waitpid=waitpid) == 2
    assert waitpid.call_count == 3


def test_reap_pending_with_no_children_returns_zero():
    waitpid = mock.Mock(side_effect=[ECHILD])
    assert base.reap_pending(waitpid=waitpid) == 0
    waitpid.assert_called_once_with(-1, os.WNOHANG)


def test_reap_pending_with_children_still_running_returns_zero():
    waitpid = mock.Mock(side_effect=[(0, 0)])
    assert base.reap_pending(waitpid=waitpid) == 0
    waitpid.assert_called_once_with(-1, os.WNOHANG)


def test_reap_pending_counts_pids_it_did_not_fork():
    # waitpid(-1) collects any child of the process, known or not.
    waitpid = mock.Mock(side_effect=[(99999, 0), (1, 9), (0, 0)])
    assert base.reap_pending(waitpid=waitpid) == 2


def test_reap_pending_lets_other_errors_through():
    waitpid = mock.Mock(side_effect=[(101, 0), OSError(errno.EINVAL, "bad")])
    with pytest.raises(OSError, match="bad"):
        base.reap_pending(waitpid=waitpid)


def test_reap_all_blocks_until_child_process_error():
    waitpid = mock.Mock(side_effect=[(101, 0), (102, 0), (103, 0), ECHILD])
    assert base.reap_all(waitpid=waitpid) == 3
    assert waitpid.call_args_list == [mock.call(-1, 0)] * 4


def test_reap_all_with_no_children_returns_zero():
    waitpid = mock.Mock(side_effect=[ECHILD])
    assert base.reap_all(waitpid=waitpid) == 0


# -- sigchld -------------------------------------------------------------------


def test_sigchld_handler_reaps_every_pending_child_in_one_call(fake_waitpid):
    # Three children exited, one (coalesced) SIGCHLD arrived.
    fake = fake_waitpid((101, 0), (102, 0), (103, 0), (0, 0))
    make("sigchld")._handle_sigchld(signal.SIGCHLD, None)
    assert fake.call_args_list == [WNOHANG_CALL] * 4


def test_sigchld_handler_swallows_child_process_error(fake_waitpid):
    fake = fake_waitpid((101, 0), ECHILD)
    make("sigchld")._handle_sigchld(signal.SIGCHLD, None)
    assert fake.call_count == 2


def test_sigchld_handler_with_nothing_pending(fake_waitpid):
    fake = fake_waitpid((0, 0))
    make("sigchld")._handle_sigchld(signal.SIGCHLD, None)
    fake.assert_called_once_with(-1, os.WNOHANG)


def test_sigchld_close_blocking_collects_the_rest(fake_waitpid, keep_sigchld):
    fake = fake_waitpid((101, 0), (0, 0), (102, 0), ECHILD)
    make("sigchld").close(blocking=True)
    assert fake.call_args_list == [WNOHANG_CALL, WNOHANG_CALL, mock.call(-1, 0), mock.call(-1, 0)]
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL


def test_sigchld_close_not_blocking_only_reaps_what_is_pending(fake_waitpid, keep_sigchld):
    fake = fake_waitpid((101, 0), (0, 0))
    make("sigchld").close(blocking=False)
    assert fake.call_args_list == [WNOHANG_CALL, WNOHANG_CALL]


# -- sigchld-once ----------------------------------------------------------------


def test_sigchld_once_handler_reaps_exactly_one_of_three_pending(fake_waitpid):
    fake = fake_waitpid((101, 0), (102, 0), (103, 0), (0, 0))
    make("sigchld-once")._handle_sigchld(signal.SIGCHLD, None)
    fake.assert_called_once_with(-1, os.WNOHANG)


def test_sigchld_once_each_signal_reaps_one_more(fake_waitpid):
    fake = fake_waitpid((101, 0), (102, 0), (103, 0))
    reaper = make("sigchld-once")
    reaper._handle_sigchld(signal.SIGCHLD, None)
    reaper._handle_sigchld(signal.SIGCHLD, None)
    assert fake.call_count == 2  # the third child is still a zombie


def test_sigchld_once_handler_swallows_child_process_error(fake_waitpid):
    fake = fake_waitpid(ECHILD)
    make("sigchld-once")._handle_sigchld(signal.SIGCHLD, None)
    fake.assert_called_once_with(-1, os.WNOHANG)


def test_sigchld_once_close_blocking_collects_the_backlog(fake_waitpid, keep_sigchld):
    fake = fake_waitpid((102, 0), (103, 0), ECHILD)
    make("sigchld-once").close(blocking=True)
    assert fake.call_args_list == [mock.call(-1, 0)] * 3
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL


# -- poll ------------------------------------------------------------------------


def test_poll_reaps_all_pending_when_a_client_connects(fake_waitpid):
    fake = fake_waitpid((101, 0), (102, 0), (0, 0))
    server = FakeServer(pids=[31])
    conn = object()
    make("poll", server).spawn(conn)
    assert fake.call_args_list == [WNOHANG_CALL] * 3
    assert server.forks == [(conn, None)]


def test_poll_with_no_children_still_forks(fake_waitpid):
    fake = fake_waitpid(ECHILD)
    server = FakeServer(pids=[31])
    make("poll", server).spawn(object())
    fake.assert_called_once_with(-1, os.WNOHANG)
    assert len(server.forks) == 1


def test_poll_collects_nothing_on_a_pass_without_a_client(fake_waitpid):
    # A wakeup that forks nothing (a client that gave up before accept)
    # must not collect the last children: the lingering leak is the lesson.
    fake = fake_waitpid()
    make("poll").tick()
    fake.assert_not_called()


def test_poll_on_fork_does_not_wait(fake_waitpid):
    fake = fake_waitpid()
    make("poll").on_fork(101)
    fake.assert_not_called()


# -- wait ------------------------------------------------------------------------


def test_wait_on_fork_waits_for_exactly_that_pid(fake_waitpid):
    fake = fake_waitpid((4242, 0))
    make("wait").on_fork(4242)
    fake.assert_called_once_with(4242, 0)


def test_wait_on_fork_tolerates_child_process_error(fake_waitpid):
    fake = fake_waitpid(ECHILD)
    make("wait").on_fork(4242)
    fake.assert_called_once_with(4242, 0)


def test_wait_spawn_forks_then_waits(fake_waitpid):
    fake = fake_waitpid((77, 0))
    server = FakeServer(pids=[77])
    conn = object()
    make("wait", server).spawn(conn)
    assert server.forks == [(conn, None)]
    fake.assert_called_once_with(77, 0)


def test_wait_mode_has_no_child_delay():
    assert modes.get("wait").child_delay == 0.0


# -- double-fork -----------------------------------------------------------------


def test_double_fork_on_fork_waits_the_middle_child(fake_waitpid):
    fake = fake_waitpid((555, 0))
    make("double-fork").on_fork(555)
    fake.assert_called_once_with(555, 0)


def test_double_fork_on_fork_tolerates_child_process_error(fake_waitpid):
    fake = fake_waitpid(ECHILD)
    make("double-fork").on_fork(555)
    fake.assert_called_once_with(555, 0)


def test_double_fork_spawn_forks_a_middle_child_that_forks_the_worker(fake_waitpid):
    fake = fake_waitpid((555, 0))
    server = FakeServer(pids=[555, 556])
    reaper = make("double-fork", server)
    conn = object()
    reaper.spawn(conn)
    assert len(server.forks) == 1
    forked_conn, work = server.forks[0]
    assert forked_conn is conn
    assert work == reaper._orphan_worker
    fake.assert_called_once_with(555, 0)  # the middle child, not the worker

    # What the middle child runs: fork the worker and return (then exit).
    work(conn)
    assert server.forks[1] == (conn, None)
    assert fake.call_count == 1  # the worker is never waited for here


# -- none, ignore, thread: close -------------------------------------------------


@pytest.mark.parametrize("blocking", [True, False])
def test_none_close_never_waits(fake_waitpid, blocking):
    fake = fake_waitpid((101, 0), ECHILD)
    make("none").close(blocking=blocking)
    fake.assert_not_called()


def test_none_never_collects_anything(fake_waitpid):
    fake = fake_waitpid()
    reaper = make("none")
    reaper.on_fork(101)
    reaper.tick()
    fake.assert_not_called()


@pytest.mark.parametrize("blocking", [True, False])
def test_thread_close_never_waits(fake_waitpid, blocking):
    fake = fake_waitpid()
    make("thread").close(blocking=blocking)
    fake.assert_not_called()


def test_ignore_close_blocking_waits_until_child_process_error(fake_waitpid):
    fake = fake_waitpid(ECHILD)
    make("ignore").close(blocking=True)
    fake.assert_called_once_with(-1, 0)


@pytest.mark.parametrize("name", ["wait", "poll", "double-fork", "pidfd", "reaper-thread"])
def test_default_close_reaps_all_only_when_blocking(fake_waitpid, name):
    fake = fake_waitpid((101, 0), (102, 0), ECHILD)
    reaper = make(name)
    reaper.close(blocking=False)
    fake.assert_not_called()
    reaper.close(blocking=True)
    assert fake.call_args_list == [mock.call(-1, 0)] * 3


# -- pidfd -----------------------------------------------------------------------


def test_pidfd_watches_each_child_and_collects_it_when_readable(monkeypatch, fake_waitpid):
    fd = os.open(os.devnull, os.O_RDONLY)  # stands in for the pidfd; closed by the mode
    pidfd_open = mock.Mock(return_value=fd)
    monkeypatch.setattr(os, "pidfd_open", pidfd_open, raising=False)
    fake = fake_waitpid((321, 0))
    server = FakeServer()
    reaper = make("pidfd", server)

    reaper.on_fork(321)
    pidfd_open.assert_called_once_with(321)
    assert list(server.watched) == [fd]
    fake.assert_not_called()

    server.watched[fd]()  # the selector saw the pidfd turn readable
    assert server.unwatched == [fd]
    fake.assert_called_once_with(321, os.WNOHANG)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # the mode closed it


def test_pidfd_falls_back_to_polling_on_emfile(monkeypatch, fake_waitpid, keep_sigchld):
    pidfd_open = mock.Mock(side_effect=OSError(errno.EMFILE, "Too many open files"))
    monkeypatch.setattr(os, "pidfd_open", pidfd_open, raising=False)
    # First tick: the child is still running; second tick: it has exited.
    fake = fake_waitpid((0, 0), (321, 0))
    server = FakeServer()
    reaper = make("pidfd", server)

    reaper.on_fork(321)
    assert server.watched == {}
    fake.assert_not_called()
    # Its exit must wake the loop, which passes only when something arrives:
    # a Python handler makes SIGCHLD write to the server's wakeup fd.
    assert callable(signal.getsignal(signal.SIGCHLD))

    reaper.tick()
    fake.assert_called_once_with(321, os.WNOHANG)
    assert reaper._unwatched == {321}

    reaper.tick()
    assert fake.call_args_list == [mock.call(321, os.WNOHANG)] * 2
    assert reaper._unwatched == set()
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL  # nothing left to poll for

    reaper.tick()  # forgotten: no further waitpid
    assert fake.call_count == 2


def test_pidfd_polled_child_collected_elsewhere_is_forgotten(
    monkeypatch, fake_waitpid, keep_sigchld
):
    monkeypatch.setattr(
        os, "pidfd_open", mock.Mock(side_effect=OSError(errno.EMFILE, "x")), raising=False
    )
    fake = fake_waitpid(ECHILD)
    reaper = make("pidfd")
    reaper.on_fork(321)
    reaper.tick()
    fake.assert_called_once_with(321, os.WNOHANG)
    assert reaper._unwatched == set()


def test_pidfd_polls_only_its_own_unwatched_pids(monkeypatch, fake_waitpid):
    fds = [os.open(os.devnull, os.O_RDONLY)]
    results = [fds[0], OSError(errno.EMFILE, "x"), OSError(errno.EMFILE, "x")]
    monkeypatch.setattr(os, "pidfd_open", mock.Mock(side_effect=results), raising=False)
    fake = fake_waitpid((11, 0), (0, 0), (11, 0), (12, 0))  # some order of 11 and 12
    server = FakeServer()
    reaper = make("pidfd", server)
    for pid in (10, 11, 12):
        reaper.on_fork(pid)
    try:
        assert reaper._unwatched == {11, 12}
        reaper.tick()
        assert {c.args for c in fake.call_args_list} == {(11, os.WNOHANG), (12, os.WNOHANG)}
        assert fake.call_count == 2
        assert len(reaper._unwatched) == 1
        reaper.tick()
        assert reaper._unwatched == set()
    finally:
        os.close(fds[0])


def test_pidfd_tick_without_fallback_does_not_wait(fake_waitpid):
    fake = fake_waitpid()
    make("pidfd").tick()
    fake.assert_not_called()


# -- reaper-thread ---------------------------------------------------------------


class StopLoop(Exception):
    """Raised by the fake event to leave the reaper thread's endless loop."""


def test_reaper_thread_loop_waits_then_sleeps_on_echild(fake_waitpid):
    fake = fake_waitpid((101, 0), (102, 0), ECHILD)
    events = []
    forked = mock.Mock()
    forked.clear.side_effect = lambda: events.append("clear")
    forked.wait.side_effect = StopLoop
    reaper = make("reaper-thread")
    reaper._forked = forked

    with pytest.raises(StopLoop):
        reaper._reap_forever()

    assert fake.call_args_list == [mock.call(-1, 0)] * 3
    # The event is cleared before every waitpid, so a fork in between is seen.
    assert events == ["clear"] * 3
    forked.wait.assert_called_once_with()


def test_reaper_thread_on_fork_wakes_the_thread():
    reaper = make("reaper-thread")
    reaper._forked = mock.Mock()
    reaper.on_fork(101)
    reaper._forked.set.assert_called_once_with()


# -- default spawn and thread ---------------------------------------------------


def test_default_spawn_forks_and_reports_the_pid():
    server = FakeServer(pids=[31])
    reaper = make("none", server)
    seen: list[int] = []
    reaper.on_fork = seen.append
    conn = object()
    reaper.spawn(conn)
    assert server.forks == [(conn, None)]
    assert seen == [31]


def test_thread_spawn_starts_a_daemon_thread_and_never_forks(monkeypatch, fake_waitpid):
    import threading

    fake = fake_waitpid()
    thread_cls = mock.Mock()
    monkeypatch.setattr(threading, "Thread", thread_cls)
    server = FakeServer()
    conn = object()
    make("thread", server).spawn(conn)
    thread_cls.assert_called_once_with(target=server.serve_worker, args=(conn,), daemon=True)
    thread_cls.return_value.start.assert_called_once_with()
    assert server.forks == []
    fake.assert_not_called()
