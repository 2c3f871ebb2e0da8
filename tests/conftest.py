"""Test-wide safety net: nothing a test starts may outlive the session."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import psutil
import pytest

from tests.helpers import PYTHON


def pytest_configure(config: pytest.Config) -> None:
    # The Ctrl-C tests send SIGINT to what they start. A shell that runs the
    # suite in the background (`bash .ci/run &`) starts it with SIGINT
    # ignored; an ignored signal stays ignored across exec, and zombiewatch
    # keeps it ignored as nohup's user expects. The suite's own processes
    # get the default instead, so those tests test zombiewatch, not the
    # shell that started the suite.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _reap_children() -> None:
    # Last resort, as in psutil's tests: kill what a failed test left
    # running and collect it, so one failure does not cascade.
    me = psutil.Process()
    children = me.children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=5)


@pytest.fixture(scope="session", autouse=True)
def reap_leftovers() -> Iterator[None]:
    yield
    _reap_children()


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start a subprocess that is killed and waited for after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(args, **kwargs)  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            # SIGTERM first: the server then stops and collects its workers.
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def serve(spawn):
    """Start ``zombiewatch serve --port 0 ARGS``; return (proc, ready line)."""

    def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
        from tests.helpers import read_ready_line

        proc = spawn(
            [PYTHON, "-m", "zombiewatch", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        return proc, read_ready_line(proc)

    return start


@pytest.fixture(params=["native", "python"])
def feed(request, monkeypatch) -> str:
    """Each event monitor made in the test reads its events through this
    feed (zombiewatch/_feeds.py): the C extension's thread, or Python's."""
    from zombiewatch import _feeds

    if request.param == "native":
        monkeypatch.delenv("ZOMBIEWATCH_NATIVE", raising=False)
        if _feeds.native_reason() is not None:
            pytest.skip(f"no native feed: {_feeds.native_reason()}")
    else:
        monkeypatch.setenv("ZOMBIEWATCH_NATIVE", "0")
    return str(request.param)
