"""The fork-per-connection line server; the reaping mode decides the rest.

Protocol: a client sends lines and gets each back in upper case; the
connection ends at EOF. A line over ``max_line`` bytes, a line with NUL
or non-UTF-8 bytes, a client idle for ``idle_timeout`` seconds, or a
connection open for ``conn_timeout`` seconds ends that connection with an
``ERROR ...`` line, never the server. A client the server cannot take on
(no process, thread or descriptor for it) gets ``ERROR server busy``.

This module runs as its own process (``python -m zombiewatch.server
CONFIG_JSON``). Its parent forks once per connection, and a fork costs
more the more the parent has imported (at-fork hooks, copy-on-write
pages: docs/FACTS.md, Fork cost), so it imports no psutil, click, asyncio, logging,
threading or typing; modes that need threads import them themselves.
Logs go to stderr as plain lines; stdout carries only the ready line.
"""

from __future__ import annotations

import errno
import json
import os
import select
import selectors
import signal
import socket
import sys
import time

from zombiewatch import _defaults, _procfs, _record, modes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# ExitCode.NOT_MEASURED; errors.py imports click, which this process must not.
EXIT_NOT_MEASURED = 3

# What a client hears when no worker can start for it (fork or thread
# failed, no descriptor left); the flooder counts it as an "error reply".
BUSY = b"ERROR server busy: cannot start a worker\n"


class Config:
    """What ``zombiewatch serve`` passes to the server process."""

    __slots__ = (
        "child_delay",
        "conn_timeout",
        "host",
        "idle_timeout",
        "max_children",
        "mode",
        "port",
        "record",
    )

    def __init__(
        self,
        mode: str = _defaults.MODE,
        host: str = _defaults.HOST,
        port: int = _defaults.PORT,
        max_children: int | None = None,
        child_delay: float = _defaults.CHILD_DELAY,
        idle_timeout: float = _defaults.IDLE_TIMEOUT,
        record: str | None = None,
        conn_timeout: float = _defaults.CONN_TIMEOUT,
    ) -> None:
        self.mode = mode
        self.host = host
        self.port = port
        self.max_children = max_children
        self.child_delay = child_delay
        self.idle_timeout = idle_timeout
        self.conn_timeout = conn_timeout
        self.record = record  # a file for the ground-truth record (_record.py), or None

    def to_json(self) -> str:
        """Serialise for the server's command line."""
        return json.dumps({name: getattr(self, name) for name in self.__slots__})


def command(config: Config) -> list[str]:
    """Return the argv that starts a server process for ``config``."""
    return [sys.executable, "-m", "zombiewatch.server", config.to_json()]


class Server:
    """Accept connections and hand each to the mode's ``spawn``.

    Tunables are class attributes, as in socketserver.
    """

    max_line = 64 * 1024
    idle_timeout = _defaults.IDLE_TIMEOUT
    conn_timeout = _defaults.CONN_TIMEOUT
    linger = 2.0  # seconds to drain a client's input after an error line
    # The kernel caps this at net.core.somaxconn (4096 on Linux 5.4+). The
    # socketserver default of 5 overflows at 50 concurrent clients: they
    # retransmit SYNs for seconds, or are reset (docs/FACTS.md, Listen backlog).
    backlog = 4096
    accept_batch = 64  # connections accepted per wakeup, at most

    def __init__(self, config: Config) -> None:
        self.config = config
        self.idle_timeout = config.idle_timeout
        self.conn_timeout = config.conn_timeout
        self.reaper = modes.get(config.mode)()
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self._stopping = False
        self._wakeup_r, self._wakeup_w = os.pipe()
        # With --max-children, one pipe per worker: the worker holds the
        # write end for its whole life, and the kernel closes it when the
        # worker exits however it exits (SIGKILL too), so EOF on our read
        # end counts it out without depending on the mode (`none` never
        # learns that a child exited). The write end waits here, keyed by
        # the connection's fd, until the worker takes it.
        self._worker_ends: dict[int, int] = {}
        self._lives: set[int] = set()  # read ends of the workers still alive
        self._forked = False  # did the last spawn() fork?
        self._in_child = False
        self._paused = False
        self._resume_at: float | None = None
        self.fork_failures = 0  # clients refused with BUSY: no worker could start
        # accept() out of descriptors with no spare to refuse the client
        # with: the listener paused and the client waited, unanswered.
        self.accept_pauses = 0
        self._pausing = False  # logged the current burst of pauses
        self._spare: int | None = None  # see _refuse_for_want_of_fds()
        self.max_workers = 0  # most workers alive at once, by our --max-children count
        self._failing_since: int | None = None
        self.recorder: _record.Recorder | None = None  # the ground truth, when asked for

    # -- set-up ------------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        """Open the listening socket; return the (host, port) it got."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(self.backlog)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        # The workers' idle timeout as kernel socket options, set once here:
        # accepted sockets inherit them (Linux, the BSDs), so a worker reads
        # with one blocking read() that fails with EAGAIN when the client
        # has been idle too long. settimeout() per connection would instead
        # make the socket non-blocking and poll() before every call.
        timeval = _timeval(self.idle_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.listener = sock
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    def _install_signals(self) -> None:
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        # Handlers only set a flag; the wakeup fd makes select() return.
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._handle_stop)
        signal.signal(signal.SIGINT, self._handle_stop)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, self._drain_wakeup)

    def _handle_stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass

    # -- the loop ----------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept until SIGTERM/SIGINT, then stop the workers and return."""
        assert self.listener is not None, "bind() first"
        self._install_signals()
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self._spare = _open_spare()
        self.reaper.install(self)
        try:
            while not self._stopping:
                self.reaper.tick()
                # No timeout: a pass happens only when something arrives, so
                # `poll` really does leave the children that end after the
                # last connection (a periodic wakeup would collect them).
                # The one exception is a pause after running out of fds.
                timeout = None
                if self._resume_at is not None:
                    timeout = max(0.0, self._resume_at - time.monotonic())
                events = self.selector.select(timeout)
                for key, _events in events:
                    key.data()
                if self._resume_at is not None and time.monotonic() >= self._resume_at:
                    self._resume_listener()
        finally:
            self._shutdown()

    def _accept(self) -> None:
        # Take every client already waiting, up to a batch: one pass of the
        # loop per burst of connections rather than per connection. The
        # batch bound keeps signals and worker ends from waiting behind a
        # flood; a pause (fd limit, --max-children) or a stop ends it early.
        # Modes that collect between passes (pidfd) take one client per pass.
        batch = self.accept_batch if self.reaper.batch_accepts else 1
        for _ in range(batch):
            if not self._accept_one() or self._paused or self._stopping:
                return

    def _accept_one(self) -> bool:
        """Accept and spawn one client; False once the backlog is empty."""
        assert self.listener is not None
        try:
            conn, _addr = self.listener.accept()
        except (InterruptedError, ConnectionAbortedError):
            return True  # the client gave up already; others may wait
        except BlockingIOError:
            return False  # nobody waiting (or another wakeup took them)
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                refused = self._refuse_for_want_of_fds(err)
                if refused is not None:
                    return refused
            # ENOBUFS/ENOMEM, or out of descriptors with no spare: the
            # client stays in the backlog, unanswered. Stop listening for a
            # moment, or the still-readable listener would spin this loop.
            self.accept_pauses += 1
            if not self._pausing:  # once per burst, as for refusals
                self._pausing = True
                self._log(f"cannot accept a connection: {err}; pausing until one can")
            self._pause_listener(resume_in=0.1)
            return False
        fd = conn.fileno()
        life = None
        self._forked = False
        try:
            if self.config.max_children:
                life = self._open_life(fd)  # EMFILE too: refused like a failed fork
            self.reaper.spawn(conn)
        except (OSError, RuntimeError) as err:
            # EAGAIN at the process limit, ENOMEM, EMFILE, or "can't start
            # new thread": refuse this one connection and keep accepting.
            if life is not None:
                os.close(life)
                end = self._worker_ends.pop(fd, None)
                if end is not None:
                    os.close(end)
            self._refuse(conn, err)
            return True
        if life is not None:
            if self._forked:
                # The child holds its own copy of the write end; a worker
                # thread takes ours from _worker_ends and closes it itself.
                os.close(self._worker_ends.pop(fd))
            self._lives.add(life)
            self.max_workers = max(self.max_workers, len(self._lives))
        self._worker_started()
        return True

    def _refuse_for_want_of_fds(self, err: OSError) -> bool | None:
        """accept() failed with EMFILE/ENFILE: refuse the client at the head
        of the backlog with BUSY, using the spare descriptor to accept it.

        Returns True once a client was refused, False if none was waiting
        after all, None if there is no spare (the caller pauses). Without
        this, a server out of descriptors (pidfd's one per child, thread's
        one per connection) leaves every new client in silence until some
        worker ends: the libev/nginx remedy of one descriptor kept in
        reserve (docs/DESIGN.md, Server protocol; docs/FACTS.md, Slow
        clients and running out).
        """
        assert self.listener is not None
        if self._spare is None:
            self._spare = _open_spare()  # descriptors may have come free since
            return None
        os.close(self._spare)
        self._spare = None
        try:
            conn, _addr = self.listener.accept()
        except BlockingIOError:
            conn = None  # the waiting client gave up
        except OSError:
            # Another thread (thread mode) took the descriptor first.
            self._spare = _open_spare()
            return None
        if conn is not None:
            self._refuse(conn, err)
        self._spare = _open_spare()
        return conn is not None

    def _open_life(self, fd: int) -> int:
        life_r, life_w = os.pipe()
        self._worker_ends[fd] = life_w
        return life_r

    def _refuse(self, conn: socket.socket, err: Exception) -> None:
        self.fork_failures += 1
        if self._failing_since is None:
            # Once per burst: a server at its process limit fails thousands
            # of forks a second, and one line per failure drowns the log.
            self._failing_since = self.fork_failures
            self._log(f"cannot serve a connection: {err}; refusing until one can")
        if conn is not None:
            _send_busy(conn)

    def _pause_listener(self, resume_in: float | None = None) -> None:
        """Stop accepting; clients wait in the backlog. With ``resume_in``,
        accept again after that many seconds."""
        assert self.listener is not None
        if not self._paused:
            self.selector.unregister(self.listener)
            self._paused = True
        if resume_in is not None:
            self._resume_at = time.monotonic() + resume_in

    def _resume_listener(self) -> None:
        assert self.listener is not None
        if self._spare is None:
            self._spare = _open_spare()
        if self._paused:
            self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
            self._paused = False
        self._resume_at = None

    def _worker_started(self) -> None:
        self._pausing = False
        if self._failing_since is not None:
            failed = self.fork_failures - self._failing_since + 1
            self._log(f"workers start again after {failed} refused connection(s)")
            self._failing_since = None
        max_children = self.config.max_children
        if max_children and len(self._lives) >= max_children:
            self._count_lives()
            if len(self._lives) >= max_children:
                # Extra clients wait in the listen backlog; each worker's
                # end wakes the loop until there is room again.
                self._pause_listener()
                for life in self._lives:
                    self.selector.register(life, selectors.EVENT_READ, self._life_ended)

    def _count_lives(self) -> None:
        """Forget the workers that have ended (their pipes are at EOF)."""
        poller = select.poll()
        for life in self._lives:
            poller.register(life, select.POLLIN)
        for life, _events in poller.poll(0):
            self._lives.discard(life)
            os.close(life)

    def _life_ended(self) -> None:
        max_children = self.config.max_children
        assert max_children is not None
        for key in list(self.selector.get_map().values()):
            if key.data == self._life_ended:
                self.selector.unregister(key.fd)
        self._count_lives()
        if len(self._lives) < max_children:
            self._resume_listener()
        else:
            for life in self._lives:
                self.selector.register(life, selectors.EVENT_READ, self._life_ended)

    def _shutdown(self) -> None:
        if self.listener is not None:
            self.listener.close()
        # Stop the workers still serving, so a stopped server leaves no live
        # child and close(blocking=True) returns at once (workers reset
        # SIGTERM to its default). Our children by pid, read from the
        # kernel; and if we lead our own session (the runner starts us so),
        # our process group too, which also holds double-forked workers.
        # Under a shell the group may hold other programs of a pipeline, so
        # then it is left alone.
        for pid in _procfs.read_children(os.getpid()):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # exited since the read; a zombie ignores it anyway
        if os.getsid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGTERM)  # our handler only sets the flag
        self.reaper.close(blocking=True)

    # -- hooks offered to the modes -----------------------------------------

    def watch_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` from the loop when ``fd`` becomes readable."""
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        self.selector.unregister(fd)

    def fork_worker(
        self, conn: socket.socket, work: Callable[[socket.socket], None] | None = None
    ) -> int:
        """Fork a child that runs ``work(conn)`` (default: serve it), then exits.

        Returns the child's pid in the parent, which closes its copy of the
        connection. The child never returns: ``os._exit`` in ``finally``
        keeps it out of the parent's stack whatever ``work`` raises.
        """
        # No flush before the fork: every write of the server is flushed at
        # once (main(), _log()), and a child leaves by os._exit(), which
        # never flushes, so no buffered line can be written twice.
        try:
            pid = os.fork()
        except OSError:
            if self._in_child:
                # A child forking its own worker (double-fork's middle
                # child): the parent let go of the connection at the first
                # fork, so the client hears BUSY from here. The raise ends
                # this child with status 1, which the parent counts.
                _send_busy(conn)
            raise
        if pid:
            self._forked = True
            conn.close()
            if self.recorder is not None:
                self.recorder.note(b"F", pid)
            return pid
        status = 1
        try:
            if self.recorder is not None:
                self.recorder.note_start()
            self._become_child()
            (work or self.serve_worker)(conn)
            status = 0
        finally:
            if self.recorder is not None:
                self.recorder.note_exit()
            os._exit(status)

    def _become_child(self) -> None:
        # Default dispositions: a SIGTERM to the process group must end a
        # worker, and the parent's SIGCHLD handler means nothing here.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # close() only drops our descriptor; unregistering would edit the
        # epoll set the parent shares with us.
        self.selector.close()
        if self.listener is not None:
            self.listener.close()
        spare = () if self._spare is None else (self._spare,)
        for fd in (self._wakeup_r, self._wakeup_w, *spare, *self._lives):
            try:
                os.close(fd)
            except OSError:
                pass  # already closed by the first of a double fork
        self._lives = set()
        self._spare = None
        self._in_child = True

    def serve_worker(self, conn: socket.socket) -> None:
        """Serve one connection to its end, then linger for ``child_delay``."""
        # A worker thread takes its end of the life pipe now, while the
        # connection's fd still names it; a child process just keeps its
        # copy open until the kernel closes it at exit.
        life = None if self._in_child else self._worker_ends.pop(conn.fileno(), None)
        try:
            self.handle(conn)
        finally:
            conn.close()
            self._linger()
            if life is not None:
                os.close(life)

    def _linger(self) -> None:
        # Sleep to the next multiple of child_delay on the monotonic clock,
        # which is system-wide: every worker alive exits at the same instant,
        # the burst that makes SIGCHLDs coalesce.
        delay = self.config.child_delay
        if delay > 0:
            time.sleep(delay - time.monotonic() % delay)

    def handle(self, conn: socket.socket) -> None:
        """Answer each line in upper case until EOF, an error, idleness or
        the connection's deadline."""
        # Plain blocking reads of the descriptor; the idle timeout is the
        # SO_RCVTIMEO set in bind(). setblocking(True) because BSD accept()
        # passes the listener's O_NONBLOCK on to the connection.
        conn.setblocking(True)
        fd = conn.fileno()
        deadline = time.monotonic() + self.conn_timeout
        pending = b""
        try:
            while True:
                by_deadline = self._bound(conn, deadline)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out
                    if by_deadline:
                        continue  # _bound() now says the deadline has passed
                    self._send_error(conn, f"idle for {self.idle_timeout:g} s")
                    return
                if not data:
                    # EOF: the client is done. A last line without a
                    # newline is answered like any other.
                    if pending:
                        self._answer(conn, [pending], b"", deadline)
                    return
                pending += data
                if b"\n" in data:
                    *lines, pending = pending.split(b"\n")
                    if not self._answer(conn, lines, b"\n", deadline):
                        return
                if len(pending) > self.max_line:
                    self._send_error(conn, f"line longer than {self.max_line} bytes")
                    return
        except _Expired:
            self._send_error(conn, f"connection open for {self.conn_timeout:g} s")
        except OSError:
            pass  # reset, broken pipe, or SO_SNDTIMEO: the client left

    def _bound(self, conn: socket.socket, deadline: float) -> bool:
        """Keep the next blocking read or send within the connection's deadline.

        The idle timeout bounds each read; a client that sends a byte just
        before it runs out would hold its worker forever. So in the last
        ``idle_timeout`` seconds before the deadline the socket's timeouts
        shrink to what is left (one setsockopt per call then, none before).
        Returns True when the deadline is what bounds the next call; raises
        ``_Expired`` once it has passed (docs/FACTS.md, Slow clients and
        running out).
        """
        left = deadline - time.monotonic()
        if left >= self.idle_timeout:
            return False
        if left <= 0:
            raise _Expired
        timeval = _timeval(left)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return True

    def _sendall(self, conn: socket.socket, data: bytes, deadline: float) -> None:
        """Send all of ``data``, but not past the connection's deadline."""
        # sendall() would retry partial sends for as long as the client reads
        # a little now and then: a slow reader is slowloris on the way back.
        # A blocking send() returns what it queued when SO_SNDTIMEO runs out
        # (docs/FACTS.md, Slow clients and running out).
        view = memoryview(data)
        while view:
            self._bound(conn, deadline)
            view = view[conn.send(view) :]

    def _answer(self, conn: socket.socket, lines: list[bytes], end: bytes, deadline: float) -> bool:
        """Send ``lines`` back in upper case; False after an error line."""
        # One check and one send for everything read at once: a client that
        # pipelines many lines costs one syscall, not one per line.
        batch = end.join(lines) + end
        longest = max(len(line) for line in lines) + len(end)
        if longest <= self.max_line and b"\0" not in batch and _is_utf8(batch):
            self._sendall(conn, batch.upper(), deadline)
            return True
        # Something in the batch is bad: answer the lines before it, then
        # the error, as a client reading line by line expects.
        for line in lines:
            if len(line) + len(end) > self.max_line:
                self._send_error(conn, f"line longer than {self.max_line} bytes")
                return False
            if b"\0" in line or not _is_utf8(line):
                self._send_error(conn, "line has NUL or non-UTF-8 bytes")
                return False
            self._sendall(conn, (line + end).upper(), deadline)
        return True

    def _send_error(self, conn: socket.socket, message: str) -> None:
        try:
            conn.sendall(f"ERROR {message}\n".encode())
            # A lingering close: closing with unread input sends an RST,
            # which can destroy the error line before the client reads it.
            # Half-close, then read and discard until the client's EOF, for
            # at most LINGER seconds.
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.linger
            while (remaining := deadline - time.monotonic()) > 0:
                conn.settimeout(remaining)
                if not conn.recv(65536):
                    break
        except OSError:
            pass  # reset, or the linger ran out: nothing more to tell it

    def _log(self, message: str) -> None:
        sys.stderr.write(f"zombiewatch serve[{os.getpid()}]: {message}\n")
        sys.stderr.flush()  # nothing may be pending at the next fork


class _Expired(Exception):
    """The connection's deadline (``conn_timeout``) has passed."""


def _send_busy(conn: socket.socket) -> None:
    """Tell a client no worker can start for it, and close the connection.

    No lingering close, which would stall the accept loop: a reset that
    follows still leaves the line readable on Linux (docs/FACTS.md, Slow
    clients and running out).
    """
    try:
        conn.sendall(BUSY)
    except OSError:
        pass  # it left already
    conn.close()


def _open_spare() -> int | None:
    """Open the descriptor kept in reserve for refusing clients at EMFILE."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # out already; _resume_listener() tries again


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _timeval(seconds: float) -> bytes:
    """Pack ``seconds`` as the struct timeval that SO_RCVTIMEO takes."""
    import struct  # not at the top: only bind() and a connection's last seconds need it

    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _raise_fd_limit() -> None:
    # One descriptor per connection in flight (and per child in `pidfd`);
    # the soft limit is often 1024 while the hard limit is far higher.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # RLIM_INFINITY (macOS, some containers) is not a valid soft limit.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; accept() reports EMFILE if it bites


def main(argv: list[str] | None = None) -> None:
    """Run a server from a JSON config; print one ready line to stdout."""
    args = sys.argv[1:] if argv is None else argv
    config = Config(**json.loads(args[0]))
    _raise_fd_limit()
    server = Server(config)
    if config.record:
        server.recorder = _record.Recorder(config.record)
        server.recorder.wrap_waitpid()
    try:
        host, port = server.bind()
    except (OSError, UnicodeError, ValueError) as err:
        where = f"{config.host}:{config.port}"
        why = getattr(err, "strerror", None) or str(err)
        sys.stderr.write(f"zombiewatch serve: cannot listen on {where}: {why}\n")
        sys.exit(EXIT_NOT_MEASURED)
    if not (host.startswith("127.") or host == "::1"):
        server._log(f"listening on {host}: anyone who can reach it gets an echo service")
    ready = {
        "event": "listening",
        "host": host,
        "port": port,
        "pid": os.getpid(),
        "mode": config.mode,
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    server.serve_forever()
    if server.recorder is not None:
        server.recorder.flush()
    # The last line: what the runner cannot see from outside.
    try:
        stopped = {
            "event": "stopped",
            "refused": server.fork_failures,
            "accept_pauses": server.accept_pauses,
        }
        if config.max_children:
            stopped["max_workers"] = server.max_workers
        sys.stdout.write(json.dumps(stopped) + "\n")
        sys.stdout.flush()
    except OSError:
        pass  # nobody reads our stdout any more


if __name__ == "__main__":
    main()
