"""The fork-per-connection line server; the reaping mode decides the rest.

Protocol: a client sends lines and gets each back in upper case; the
connection ends at EOF. A line over ``max_line`` bytes, a line with NUL
or non-UTF-8 bytes, or a client idle for ``idle_timeout`` seconds ends that
connection with an ``ERROR ...`` line, never the server.

This module runs as its own process (``python -m zombiewatch.server
CONFIG_JSON``). Its parent forks once per connection, and a fork costs
more the more the parent has imported (at-fork hooks, copy-on-write
pages: FACTS.md), so it imports no psutil, click, asyncio, logging,
threading or typing; modes that need threads import them themselves.
Logs go to stderr as plain lines; stdout carries only the ready line.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time

from zombiewatch import _platform, modes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# ExitCode.NOT_MEASURED; errors.py imports click, which this process must not.
EXIT_NOT_MEASURED = 3


class Config:
    """What ``zombiewatch serve`` passes to the server process."""

    __slots__ = ("child_delay", "host", "max_children", "mode", "port")

    def __init__(
        self,
        mode: str = "sigchld",
        host: str = "127.0.0.1",
        port: int = 0,
        max_children: int | None = None,
        child_delay: float = 0.0,
    ) -> None:
        self.mode = mode
        self.host = host
        self.port = port
        self.max_children = max_children
        self.child_delay = child_delay

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
    idle_timeout = 10.0
    # The kernel caps this at net.core.somaxconn (4096 on Linux 5.4+). The
    # socketserver default of 5 overflows at 50 concurrent clients and makes
    # them retransmit SYNs for seconds (FACTS.md).
    backlog = 4096

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reaper = modes.get(config.mode)()
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self._stopping = False
        self._wakeup_r, self._wakeup_w = os.pipe()
        # With --max-children, each worker writes one byte here as it ends,
        # so the server counts live workers without depending on the mode
        # (`none` never learns that a child exited).
        self._done_r: int | None = None
        self._done_w: int | None = None
        self._live = 0
        self._paused = False
        self._resume_at: float | None = None
        self.fork_failures = 0
        self._failing_since: int | None = None

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
        if self.config.max_children:
            self._done_r, self._done_w = os.pipe()
            os.set_blocking(self._done_r, False)
            self.selector.register(self._done_r, selectors.EVENT_READ, self._collect_done)
        self._install_signals()
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
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
        assert self.listener is not None
        try:
            conn, _addr = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another wakeup took it, or the client gave up already
        except OSError as err:
            # EMFILE/ENFILE/ENOBUFS: out of resources. The client stays in
            # the backlog; stop listening for a moment, or the still-readable
            # listener would spin this loop and flood the log.
            self._refuse(None, err)
            self._pause_listener(resume_in=0.1)
            return
        try:
            self.reaper.spawn(conn)
        except (OSError, RuntimeError) as err:
            # EAGAIN at the process limit, ENOMEM, or "can't start new
            # thread": refuse this one connection and keep accepting.
            self._refuse(conn, err)
            return
        self._worker_started()

    def _refuse(self, conn: socket.socket | None, err: Exception) -> None:
        self.fork_failures += 1
        if self._failing_since is None:
            # Once per burst: a server at its process limit fails thousands
            # of forks a second, and one line per failure drowns the log.
            self._failing_since = self.fork_failures
            self._log(f"cannot serve a connection: {err}; refusing until one can")
        if conn is not None:
            try:
                conn.sendall(b"ERROR server busy: cannot start a worker\n")
            except OSError:
                pass
            conn.close()

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
        if self._paused:
            self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
            self._paused = False
        self._resume_at = None

    def _worker_started(self) -> None:
        if self._failing_since is not None:
            failed = self.fork_failures - self._failing_since + 1
            self._log(f"workers start again after {failed} refused connection(s)")
            self._failing_since = None
        if self._done_w is None:
            return
        self._live += 1
        max_children = self.config.max_children
        if max_children and self._live >= max_children:
            self._pause_listener()  # extra clients wait in the listen backlog

    def _collect_done(self) -> None:
        assert self._done_r is not None
        try:
            self._live -= len(os.read(self._done_r, 65536))
        except BlockingIOError:
            return
        max_children = self.config.max_children
        if self._paused and max_children and self._live < max_children:
            self._resume_listener()

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
        for pid in _platform.read_children(os.getpid()):
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
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            conn.close()
            return pid
        status = 1
        try:
            self._become_child()
            (work or self.serve_worker)(conn)
            status = 0
        finally:
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
        for fd in (self._wakeup_r, self._wakeup_w, self._done_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass  # already closed by the first of a double fork
        self._done_r = None

    def serve_worker(self, conn: socket.socket) -> None:
        """Serve one connection to its end, then linger for ``child_delay``."""
        try:
            self.handle(conn)
        finally:
            conn.close()
            self._linger()
            if self._done_w is not None:
                try:
                    os.write(self._done_w, b".")
                except OSError:
                    pass  # the server is gone: nobody is counting

    def _linger(self) -> None:
        # Sleep to the next multiple of child_delay on the monotonic clock,
        # which is system-wide: every worker alive exits at the same instant,
        # the burst that makes SIGCHLDs coalesce.
        delay = self.config.child_delay
        if delay > 0:
            time.sleep(delay - time.monotonic() % delay)

    def handle(self, conn: socket.socket) -> None:
        """Answer each line in upper case until EOF, an error or idleness."""
        conn.settimeout(self.idle_timeout)
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline(self.max_line + 1)
                if not line:
                    return  # EOF: the client is done
                if len(line) > self.max_line:
                    self._send_error(conn, f"line longer than {self.max_line} bytes")
                    return
                if b"\0" in line or not _is_utf8(line):
                    self._send_error(conn, "line has NUL or non-UTF-8 bytes")
                    return
                conn.sendall(line.upper())
        except TimeoutError:
            self._send_error(conn, f"idle for {self.idle_timeout:g} s")
        except OSError:
            pass  # reset or broken pipe: the client left; nothing to tell it
        finally:
            rfile.close()

    def _send_error(self, conn: socket.socket, message: str) -> None:
        try:
            conn.sendall(f"ERROR {message}\n".encode())
        except OSError:
            pass

    def _log(self, message: str) -> None:
        sys.stderr.write(f"zombiewatch serve[{os.getpid()}]: {message}\n")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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


if __name__ == "__main__":
    main()
