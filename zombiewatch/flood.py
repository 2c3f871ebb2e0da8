"""Open many connections to a line server and check every reply.

Each connection sends ``lines`` lines and expects exactly the same bytes
back in upper case; once they are all back, it closes. It half-closes
(shuts its write side) right after sending only when asked (``half_close``,
for servers that answer at the end of input): a server that relays a
child's output may take the half-close as the end and close before the
reply is written. Work is bounded twice: by the number of
connections and by a deadline for the whole flood; each connection also
has its own timeout. Traffic goes where the caller says, which the CLI
defaults to loopback.

The flood is one selector loop (epoll on Linux, kqueue on macOS) over
non-blocking sockets, the design of the C flooder in ``benchmarks/c``: on
a machine the server shares, every microsecond the flooder spends per
connection is taken from the server it measures, and asyncio streams cost
two and a half times as much CPU per connection (docs/BENCHMARKS.md, F2).

The flood runs as its own process, ``python -m zombiewatch.flood
CONFIG_JSON [PROGRESS_FD]`` (``command()``), so that it has a core of its
own and its parent's threads are none of its business; ``zombiewatch
flood`` calls the same ``run()`` in its own process. ``run()`` is the one
place that holds the contract with the runner: the JSON result on stdout,
the progress count on a descriptor, SIGTERM, the exit status. Like the
server, this process imports no click and no psutil.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zombiewatch import _stats
from zombiewatch._text import failure_list, figure, log
from zombiewatch.errors import ExitCode, ZombiewatchError

PROGRESS_EVERY = 0.2  # seconds
# Timeouts are found by a sweep on this tick, not by a timer per connection:
# a connection's timeout fires up to one tick late, and a flood of
# thousands of connections pays for no timers at all.
SWEEP_EVERY = 0.05  # seconds
# The most one recv() asks for: large replies come in pieces anyway, and
# a bigger request costs a bigger allocation on every call.
_RECV_MAX = 256 * 1024

# How a server's refusal begins (busy, bad line): an "error reply", not a wrong one.
_ERROR = b"ERROR"

# Phases of a connection; each wants different selector events.
_CONNECTING, _SENDING, _RECEIVING = 0, 1, 2

# connect() on a non-blocking socket reports completion later through
# writability and SO_ERROR. EINTR means the same: the kernel goes on
# connecting in the background (PEP 475 leaves non-blocking connects alone).
_IN_PROGRESS = frozenset({0, errno.EINPROGRESS, errno.EINTR})
# The peer is gone: RST (ECONNRESET); or it closed and then reset us while
# we were still sending (EPIPE: Linux's name for a reset in CLOSE_WAIT); or
# the reset came between our last send() and shutdown(), which then finds
# the connection closed (ENOTCONN) and leaves the error for recv().
_PEER_GONE = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN})


@dataclass
class FloodResult:
    """What happened to each connection of one flood."""

    connections: int
    concurrency: int
    ok: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    connect_latencies: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Connections that did not get their right answer."""
        return sum(self.failures.values())

    @property
    def conn_per_s(self) -> float:
        """Connections answered per second of wall time."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON shape (also what the runner reads back)."""
        return {
            "connections": self.connections,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(self.failures),
            "elapsed_s": round(self.elapsed, 4),
            "conn_per_s": round(self.conn_per_s, 1),
            "latency_ms": _stats.summary_ms(self.latencies),
            "connect_ms": _stats.summary_ms(self.connect_latencies),
        }


def payload(index: int, lines: int) -> bytes:
    """Return what connection ``index`` sends: distinct, mixed-case lines."""
    return b"".join(b"zombiewatch conn %d line %d: Hello\n" % (index, n) for n in range(lines))


def _error_name(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _connect_error_name(code: int | None) -> str:
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.ECONNRESET:
        return "connection reset"
    return os.strerror(code) if code else OSError.__name__


class _Conn:
    """One connection: its socket, what is left to send, what came back."""

    __slots__ = (
        "events", "expected", "expires", "first", "out", "phase", "received", "sock", "started",
        "tries",
    )  # fmt: skip

    def __init__(self, sent: bytes, started: float, timeout: float, first: int) -> None:
        self.sock: socket.socket | None = None  # the open socket, if any
        self.events = 0  # selector events it is registered for; 0: not registered
        self.out: bytes | memoryview = sent  # what is left to send
        self.expected = sent.upper()
        self.received = bytearray()
        self.started = started
        self.expires = started + timeout  # the current phase's timeout
        self.phase = _CONNECTING
        self.first = first  # index of the first address to try
        self.tries = 0  # addresses tried so far, for a host with several


class _Flood:
    """The connections of one flood and the selector that watches them."""

    def __init__(
        self,
        result: FloodResult,
        addresses: Sequence[tuple[Any, ...]],
        lines: int,
        timeout: float,
        selector: selectors.BaseSelector,
        half_close: bool = False,
    ) -> None:
        self.half_close = half_close
        self.result = result
        self.addresses = addresses
        self.preferred = 0  # the address that last connected: new connections try it first
        self.lines = lines
        self.timeout = timeout
        self.selector = selector
        self.live: set[_Conn] = set()  # every connection with an open socket

    def start(self, index: int) -> bool:
        """Open connection ``index``; False if no socket could be made for it."""
        sent = payload(index, self.lines)
        return self._connect(_Conn(sent, time.monotonic(), self.timeout, self.preferred))

    def _connect(self, conn: _Conn) -> bool:
        at = (conn.first + conn.tries) % len(self.addresses)
        family, kind, proto, _name, address = self.addresses[at]
        conn.tries += 1
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as err:
            # EMFILE/ENFILE/ENOBUFS: this connection fails by name, and the
            # caller starts no more until open ones have closed theirs.
            self._finish(conn, _error_name(err))
            return False
        conn.sock = sock
        self.live.add(conn)  # from here on, every way out closes the socket
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in _IN_PROGRESS:
            # Loopback can refuse at once, without going through the selector.
            self._close(conn)
            return self._connect_failed(conn, code)
        # On loopback the kernel usually completes the handshake inside
        # connect(), so send at once: that saves a trip through the selector
        # and an SO_ERROR read per connection. A socket still connecting
        # refuses with EAGAIN (Linux) or ENOTCONN (BSD, macOS).
        try:
            sent = sock.send(conn.out)
        except BlockingIOError:
            self._watch(conn, sock, selectors.EVENT_WRITE)
            return True
        except OSError as err:
            if err.errno == errno.ENOTCONN:
                self._watch(conn, sock, selectors.EVENT_WRITE)
                return True
            # The connect's own error (a refusal), which send() reports as
            # SO_ERROR would have.
            self._close(conn)
            return self._connect_failed(conn, err.errno)
        self._connected(conn)
        self._sent(conn, sock, sent)
        return True

    def _connect_failed(self, conn: _Conn, code: int | None) -> bool:
        # A name may resolve to several addresses (localhost: ::1 and
        # 127.0.0.1); like asyncio's open_connection, try each in turn.
        if conn.tries < len(self.addresses):
            return self._connect(conn)
        self._finish(conn, _connect_error_name(code))
        return True

    def _connected(self, conn: _Conn) -> None:
        now = time.monotonic()
        self.result.connect_latencies.append(now - conn.started)
        self.preferred = (conn.first + conn.tries - 1) % len(self.addresses)
        conn.expires = now + self.timeout
        conn.phase = _SENDING

    def _watch(self, conn: _Conn, sock: socket.socket, events: int) -> None:
        if not conn.events:
            self.selector.register(sock, events, conn)
        elif events != conn.events:
            self.selector.modify(sock, events, conn)
        conn.events = events

    def _close(self, conn: _Conn) -> None:
        sock = conn.sock
        if sock is not None:
            if conn.events:
                self.selector.unregister(sock)  # before close: it needs the fd
                conn.events = 0
            sock.close()
            conn.sock = None

    def _finish(self, conn: _Conn, failure: str | None) -> None:
        self.live.discard(conn)
        self._close(conn)
        if failure is None:
            self.result.ok += 1
            self.result.latencies.append(time.monotonic() - conn.started)
        else:
            self.result.failures[failure] += 1

    def ready(self, conn: _Conn, events: int) -> None:
        """Move ``conn`` on as far as the selector says it can go."""
        sock = conn.sock
        if sock is None:
            # Finished by an earlier event of the same batch: kqueue reports
            # reading and writing apart, so one socket can come twice.
            return
        if conn.phase == _CONNECTING:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._close(conn)
                self._connect_failed(conn, code)
                return
            self._connected(conn)
            self._send(conn, sock)
        elif conn.phase == _SENDING:
            # Read while sending: a server that answers line by line fills
            # our receive buffer, then blocks, then stops reading ours.
            if events & selectors.EVENT_READ:
                self._receive(conn, sock)
            if conn.sock is not None and events & selectors.EVENT_WRITE:
                self._send(conn, sock)
        else:
            self._receive(conn, sock)

    def _send(self, conn: _Conn, sock: socket.socket) -> None:
        try:
            sent = sock.send(conn.out)
        except BlockingIOError:
            # EAGAIN: not one byte fitted. Wait for room, reading meanwhile.
            self._watch(conn, sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return
        except OSError as err:
            self._finish(conn, self._peer_gone(conn, sock, err))
            return
        self._sent(conn, sock, sent)

    def _sent(self, conn: _Conn, sock: socket.socket, sent: int) -> None:
        if sent < len(conn.out):
            # The send buffer is full (large --lines): keep the rest and
            # wait until there is room, reading meanwhile.
            conn.out = memoryview(conn.out)[sent:]
            self._watch(conn, sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return
        if self.half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as err:
                self._finish(conn, self._peer_gone(conn, sock, err))
                return
        conn.out = b""
        conn.phase = _RECEIVING
        self._watch(conn, sock, selectors.EVENT_READ)

    def _receive(self, conn: _Conn, sock: socket.socket) -> None:
        received, expected = conn.received, conn.expected
        # One byte more than the rest of the reply: a server that sends more
        # than it was asked for is wrong, and this is how we see it.
        want = min(len(expected) - len(received) + 1, _RECV_MAX)
        try:
            data = sock.recv(want)
        except BlockingIOError:
            return  # woken for nothing (or by the other direction)
        except OSError as err:
            self._finish(conn, self._peer_gone(conn, sock, err))
            return
        if not data:
            why = "error reply" if received.startswith(_ERROR) else "short reply"
            self._finish(conn, why)
            return
        received += data
        if len(received) < len(expected):
            return
        if received == expected:
            # No wait for the server's close: it answered, and one that
            # keeps the connection open afterwards is not wrong for that.
            self._finish(conn, None)
        else:
            # An ERROR line is the server refusing (busy, bad line); any
            # other difference is a wrong answer.
            self._finish(conn, "error reply" if received.startswith(_ERROR) else "wrong reply")

    def _peer_gone(self, conn: _Conn, sock: socket.socket, err: OSError) -> str:
        """Name a send or receive error; an ERROR line the peer sent first wins."""
        if err.errno not in _PEER_GONE:
            return _error_name(err)
        # A server that refuses a request may write its ERROR line and close
        # while we still send: the reset then hides a reply that is still
        # queued for us to read (Linux keeps it readable after the RST).
        try:
            while len(conn.received) < len(_ERROR) and (data := sock.recv(_RECV_MAX)):
                conn.received += data
        except OSError:
            pass
        return "error reply" if conn.received.startswith(_ERROR) else "connection reset"

    def sweep(self, now: float) -> None:
        """Fail every connection whose phase has outlived its timeout."""
        for conn in [conn for conn in self.live if conn.expires <= now]:
            self._finish(conn, "connect timeout" if conn.phase == _CONNECTING else "reply timeout")

    def close(self) -> None:
        """Close every open socket, counting nothing (the caller does)."""
        for conn in self.live:
            self._close(conn)
        self.live.clear()


def flood(
    host: str,
    port: int,
    connections: int,
    concurrency: int,
    lines: int = 1,
    timeout: float = 10.0,
    deadline: float = 300.0,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    half_close: bool = False,
) -> FloodResult:
    """Open ``connections`` connections, ``concurrency`` at a time; check each reply.

    ``host`` is resolved once, before the first connection; a name that
    cannot be resolved raises ``socket.gaierror``. ``progress(done)``, if
    given, is called every ``PROGRESS_EVERY`` seconds and once at the end
    with the number of connections finished so far. The flood ends by
    itself about ``deadline`` seconds after it began, whatever the server
    does: connections cut short or never started count as failed. It
    also ends as soon as ``stop()``, checked at least every
    ``SWEEP_EVERY`` seconds, returns true: then the connections cut short
    or never started count as "stopped". With ``half_close``, each
    connection shuts its write side once it has sent everything.
    """
    # One function, past the usual length, on purpose: every step of the
    # loop below reads and moves the same clocks (end, next sweep, next
    # progress) and counters, and cutting it up would pass them around or
    # turn locals into attribute reads on the flooder's hottest path.
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    result = FloodResult(connections=connections, concurrency=concurrency)
    tick = min(SWEEP_EVERY, timeout)
    began = time.monotonic()
    end = began + deadline
    next_sweep = began + tick
    next_progress = began
    started = 0
    stopped = False
    with selectors.DefaultSelector() as selector:
        state = _Flood(result, addresses, lines, timeout, selector, half_close)
        live = state.live
        try:
            while True:
                now = time.monotonic()
                if progress is not None and now >= next_progress:
                    progress(result.ok + result.failed)
                    next_progress = now + PROGRESS_EVERY
                if now >= end:
                    break
                if stop is not None and stop():
                    stopped = True
                    break
                # The deadline is checked before each new connection, so none
                # starts once it has passed, however long a batch takes.
                while started < connections and len(live) < concurrency:
                    if time.monotonic() >= end:
                        break
                    started += 1
                    if not state.start(started - 1):
                        # Out of descriptors (EMFILE): the connections open
                        # now are as many as fit, and retrying on each pass
                        # would fail one more connection every pass. With
                        # none open, each connection left tries and fails.
                        if live:
                            concurrency = len(live)
                        break
                if not live:
                    if started >= connections:
                        break
                    continue  # every start of this batch failed at once
                wake = min(next_sweep, end, next_progress if progress is not None else end)
                for key, events in selector.select(max(wake - time.monotonic(), 0.0)):
                    state.ready(key.data, events)
                now = time.monotonic()
                if now >= next_sweep:
                    state.sweep(now)
                    next_sweep = now + tick
        finally:
            # Every path out, KeyboardInterrupt included, closes every socket.
            state.close()
    if progress is not None:
        progress(result.ok + result.failed)
    cut = connections - result.ok - result.failed
    if cut:
        # Connections cut short or never started count as failed: the flood
        # stops by itself at the deadline, whatever the server does.
        result.failures["stopped" if stopped else "flood deadline"] += cut
    result.elapsed = time.monotonic() - began
    return result


# The exit statuses of run() after which the result was printed: 0 every
# answer right, 1 some wrong, 3 none got through, 130 stopped by SIGTERM.
REPORTED = (ExitCode.OK, ExitCode.ZOMBIES, ExitCode.NOT_MEASURED, ExitCode.INTERRUPTED)


def default_deadline(connections: int) -> float:
    """Bound on a whole flood: generous, but the flood stops by itself."""
    return 60.0 + connections * 0.05


@dataclass
class Config:
    """What the flooder process is asked to do (``command()`` passes it)."""

    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 1000
    concurrency: int = 50
    lines: int = 1
    timeout: float = 10.0  # per connection
    deadline: float | None = None  # for the whole flood; None: default_deadline()
    half_close: bool = False  # shut the write side once everything is sent

    def bound(self) -> float:
        """Seconds the whole flood may take."""
        return default_deadline(self.connections) if self.deadline is None else self.deadline

    def to_json(self) -> str:
        """Serialise for the flooder's command line."""
        return json.dumps(asdict(self))


def command(config: Config, progress_fd: int | None = None) -> list[str]:
    """Return the argv that runs a flooder process for ``config``.

    With ``progress_fd`` (a descriptor the child inherits), the flooder
    writes its count of finished connections there as it goes.
    """
    argv = [sys.executable, "-m", "zombiewatch.flood", config.to_json()]
    return argv if progress_fd is None else [*argv, str(progress_fd)]


def _progress_writer(fd: int) -> Callable[[int], None]:
    def progress(done: int) -> None:
        try:
            os.write(fd, b"%d\n" % done)
        except OSError:
            pass  # EPIPE: the runner stopped reading; progress is optional

    return progress


def _summary_line(result: FloodResult, data: dict[str, Any]) -> str:
    lat = data["latency_ms"]
    failures = failure_list(result.failures)
    return (
        f"{result.ok} ok, {result.failed} failed{f' ({failures})' if failures else ''};"
        f" {data['conn_per_s']:.0f} conn/s;"
        f" latency p50 {figure(lat['p50'])} ms, p99 {figure(lat['p99'])} ms"
    )


def run(config: Config, as_json: bool = True, progress_fd: int | None = None) -> ExitCode:
    """Flood as a flooder process does: print the result, return the exit status.

    The contract with whoever started the process (the runner reads it
    back, ``zombiewatch flood`` passes it on):

    - stdout: the result, one JSON object (``FloodResult.to_dict()``) or,
      without ``as_json``, one line for people; always printed, however
      the flood ended.
    - ``progress_fd``: the count of finished connections, one decimal
      line every ``PROGRESS_EVERY`` seconds and one at the end.
    - SIGTERM: stop connecting, print what was done, exit 130
      (``INTERRUPTED``). The handler is installed for the rest of the
      process, so a SIGTERM while the result is printed cannot cut it
      short; call this only as the work of a process.
    - Exit status: 0 every connection got its right answer, 1 some did
      not, 3 none got through (``ZombiewatchError``, raised after the
      result is printed: no server answered at that address).
    """
    stopping = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    result = flood(
        config.host, config.port, config.connections, config.concurrency, config.lines,
        config.timeout, config.bound(),
        progress=None if progress_fd is None else _progress_writer(progress_fd),
        stop=lambda: stopping, half_close=config.half_close,
    )  # fmt: skip
    data = result.to_dict()
    sys.stdout.write((json.dumps(data) if as_json else _summary_line(result, data)) + "\n")
    sys.stdout.flush()
    if stopping:
        return ExitCode.INTERRUPTED
    if config.connections and not result.connect_latencies:
        # Nothing to check: no server answered at that address.
        where = f"{config.host}:{config.port}"
        raise ZombiewatchError(
            f"no connection to {where} got through ({failure_list(result.failures)})"
        )
    return ExitCode.OK if result.failed == 0 else ExitCode.ZOMBIES


def main(argv: list[str] | None = None) -> None:
    """Run a flooder process from a JSON config: ``CONFIG_JSON [PROGRESS_FD]``."""
    args = sys.argv[1:] if argv is None else argv
    config = Config(**json.loads(args[0]))
    progress_fd = int(args[1]) if len(args) > 1 else None
    code: int
    try:
        code = run(config, as_json=True, progress_fd=progress_fd)
    except ZombiewatchError as err:
        log(str(err))
        code = err.exit_code
    except (socket.gaierror, UnicodeError) as err:
        # The host does not resolve (UnicodeError: not even as IDNA): a
        # usage error, as `zombiewatch flood --host` finds it before it floods.
        log(f"cannot resolve {config.host!r}: {getattr(err, 'strerror', None) or err}")
        code = ExitCode.USAGE
    except KeyboardInterrupt:
        log("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as err:
        # As cli.main does: one line, and "could not measure".
        log(f"internal error: {type(err).__name__}: {err}")
        code = ExitCode.NOT_MEASURED
    sys.exit(code)


if __name__ == "__main__":
    main()
