"""The accept loop's answers to running out: scripted accept() results.

Out of descriptors, the server refuses the client at the head of the
backlog with the descriptor it keeps in reserve (counted in
``fork_failures``, the clients refused); only when it has no spare does it
pause with the client left waiting (``accept_pauses``). Checked end to end
in tests/e2e/test_server_attacks.py.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from zombiewatch import server as server_module
from zombiewatch.server import BUSY, Config, Server

EMFILE = OSError(errno.EMFILE, "Too many open files")


class ScriptedListener:
    """A listener whose accept() results are scripted; a real socket stands
    in for it in the selector."""

    def __init__(self, results: list[object]) -> None:
        self.results = results
        self.stand_in = socket.socket()

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, socket.socket)
        return result, ("127.0.0.1", 1)

    def fileno(self) -> int:
        return self.stand_in.fileno()

    def close(self) -> None:
        self.stand_in.close()


@pytest.fixture
def make_server() -> Iterator[object]:
    made: list[Server] = []

    def make(results: list[object], spare: bool) -> Server:
        srv = Server(Config(mode="none"))
        listener = ScriptedListener(results)
        srv.listener = listener  # type: ignore[assignment]
        srv.selector.register(listener, 1, srv._accept)
        srv._spare = server_module._open_spare() if spare else None
        made.append(srv)
        return srv

    yield make
    for srv in made:
        if srv._spare is not None:
            os.close(srv._spare)
        srv.selector.close()
        assert srv.listener is not None
        srv.listener.close()
        os.close(srv._wakeup_r)
        os.close(srv._wakeup_w)


def test_out_of_descriptors_the_spare_refuses_the_waiting_client(make_server) -> None:
    ours, theirs = socket.socketpair()
    srv = make_server([EMFILE, ours], spare=True)
    assert srv._accept_one() is True  # a client was taken care of; more may wait
    assert theirs.recv(100) == BUSY
    assert (srv.fork_failures, srv.accept_pauses) == (1, 0)
    assert srv._spare is not None  # taken back for the next time
    assert not srv._paused
    theirs.close()


def test_out_of_descriptors_with_nobody_waiting_after_all(make_server) -> None:
    srv = make_server([EMFILE, BlockingIOError()], spare=True)
    assert srv._accept_one() is False
    assert (srv.fork_failures, srv.accept_pauses) == (0, 0)
    assert srv._spare is not None


def test_without_a_spare_the_pause_is_counted_apart(make_server) -> None:
    srv = make_server([EMFILE], spare=False)
    assert srv._accept_one() is False
    assert (srv.fork_failures, srv.accept_pauses) == (0, 1)
    assert srv._paused
    assert srv._resume_at is not None
    assert srv._spare is not None  # opened again for the next time


def test_enobufs_pauses_without_refusing(make_server) -> None:
    srv = make_server([OSError(errno.ENOBUFS, "No buffer space available")], spare=True)
    assert srv._accept_one() is False
    assert (srv.fork_failures, srv.accept_pauses) == (0, 1)
