"""Run the built-in server in one mode under load and measure its zombies.

One run: start the server in its own session, wait for its ready line,
start the monitor, flood, let the settle window run, stop the server and
its whole process group, and collect whatever it orphaned. The runner is
a child subreaper on Linux, so orphans of the server (double-forked
workers, the zombies a stopped ``none`` server leaves) are reparented to
it: it counts them as escaped and reaps them, by pid, so it never steals
the status of the server or the flooder from ``subprocess``.

Nothing outlives a run: cleanup runs in ``finally`` with SIGINT and
SIGTERM blocked, SIGTERM to the runner is turned into ``Interrupted``,
and the server gets SIGTERM from the kernel if the runner is SIGKILLed
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from zombiewatch import _platform, modes, server
from zombiewatch.errors import Interrupted, ServerStartError, ZombiewatchError
from zombiewatch.monitor import Monitor
from zombiewatch.report import Report, RunResult

READY_TIMEOUT = 10.0  # seconds for the server to print its ready line
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL of the server's group
ORPHAN_TIMEOUT = 5.0  # seconds to collect the orphans of a stopped server


@dataclass
class RunOptions:
    """Knobs of one run; the CLI's options map onto these one to one."""

    connections: int = 1000
    concurrency: int = 50
    settle: float = 1.0
    interval: float = 0.01
    lines: int = 1
    child_delay: float | None = None  # None: the mode's own default
    max_children: int | None = None
    timeout: float = 10.0  # per connection
    host: str = "127.0.0.1"

    @property
    def flood_deadline(self) -> float:
        """Bound on the whole flood: generous, but the flood stops by itself."""
        return 60.0 + self.connections * 0.05


def _log(message: str) -> None:
    sys.stderr.write(f"zombiewatch: {message}\n")
    sys.stderr.flush()


def poll_until(predicate: Any, timeout: float, step: float = 0.001, max_step: float = 0.05) -> bool:
    """Call ``predicate`` with exponential backoff until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(step, remaining))
        step = min(step * 2, max_step)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until cleanup is done; they are delivered after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``Interrupted`` so cleanup runs as for Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; it is not reaped, so its
    pid and process group id cannot be reused while we look."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class ServerProcess:
    """The built-in server as a child process in its own session."""

    def __init__(self, config: server.Config) -> None:
        self.config = config
        # Closed in stop(); a file, not a pipe, so a chatty server never
        # blocks on a full pipe that nobody reads during the run.
        self._log_file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            server.command(config),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            start_new_session=True,
            preexec_fn=_platform.die_with_parent_preexec(signal.SIGTERM),
        )
        self.pid = self.proc.pid
        self.port = 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Read the ready line; raise ``ServerStartError`` if it never comes."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerStartError(f"the server did not listen within {timeout:g} s")
                if not sel.select(remaining):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait()
                    why = self.log().strip().splitlines()
                    raise ServerStartError(
                        why[-1] if why else f"the server exited with status {self.proc.returncode}"
                    )
                buf += chunk
        self.port = int(json.loads(buf.split(b"\n", 1)[0])["port"])

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._log_file.seek(0)
        return self._log_file.read().decode(errors="replace")

    def stop(self) -> None:
        """Stop the server and everything in its process group."""
        if self.proc.returncode is None:
            if not _exited(self.pid):
                os.killpg(self.pid, signal.SIGTERM)
                poll_until(lambda: _exited(self.pid), STOP_GRACE)
            # The server is at worst an unreaped zombie now, so its pid, which
            # is also its group's id, cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> None:
        """Release the server's log file (after ``stop()``)."""
        self._log_file.close()


class OrphanCollector:
    """Reap, by pid, the orphans the kernel hands us as a subreaper."""

    def __init__(self) -> None:
        self.keep: set[int] = set()  # our own subprocesses: Popen waits for them
        self.adopted: set[int] = set()

    def collect(self) -> int:
        """Reap every adopted orphan that has exited; return how many remain."""
        remaining = 0
        for pid in _platform.read_children(os.getpid()):
            if pid in self.keep:
                continue
            self.adopted.add(pid)
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    remaining += 1
            except ChildProcessError:
                pass  # collected already
        return remaining


def _flood_command(opts: RunOptions, port: int) -> list[str]:
    return [
        sys.executable, "-m", "zombiewatch", "flood",
        "--host", opts.host, "--port", str(port),
        "--connections", str(opts.connections), "--concurrency", str(opts.concurrency),
        "--lines", str(opts.lines), "--timeout", str(opts.timeout),
        "--deadline", str(opts.flood_deadline), "--json",
    ]  # fmt: skip


def run_mode(name: str, opts: RunOptions, collector: OrphanCollector) -> RunResult:
    """Measure one mode once; see the module docstring for the steps."""
    mode = modes.get(name)
    child_delay = mode.child_delay if opts.child_delay is None else opts.child_delay
    config = server.Config(
        mode=name, host=opts.host, port=0, max_children=opts.max_children, child_delay=child_delay
    )
    srv = ServerProcess(config)
    flooder: subprocess.Popen[bytes] | None = None
    monitor: Monitor | None = None
    collector.keep.add(srv.pid)
    adopted_before = len(collector.adopted)
    try:
        srv.wait_ready()
        _log(f"{name}: server pid {srv.pid} listening on {opts.host}:{srv.port}")
        adopters = [os.getpid()] if _platform.can_use_subreaper() else []
        monitor = Monitor(srv.pid, adopters=adopters, interval=opts.interval)
        monitor.start()
        with tempfile.TemporaryFile() as flood_out:
            flooder = subprocess.Popen(
                _flood_command(opts, srv.port),
                stdin=subprocess.DEVNULL,
                stdout=flood_out,
                preexec_fn=_platform.die_with_parent_preexec(signal.SIGKILL),
            )
            collector.keep.add(flooder.pid)
            _wait_collecting(collector, opts.interval, lambda: flooder.poll() is not None)
            flood_out.seek(0)
            raw = flood_out.read()
        if flooder.returncode not in (0, 1):
            raise ZombiewatchError(f"the flooder failed (status {flooder.returncode})")
        flood = json.loads(raw)
        load_end = monitor.sample()
        settle_deadline = time.monotonic() + opts.settle

        def settled() -> bool:
            # Past the window, or the monitor's latest sample found nothing
            # that could still become or stay a zombie: ending early then
            # changes no count.
            last = monitor.stats.timeline[-1]
            empty = last.t > load_end.t and last.live == 0 and last.zombies == 0
            return empty or time.monotonic() >= settle_deadline

        _wait_collecting(collector, opts.interval, settled)
        monitor.stop()
        collector.collect()
        final = monitor.sample()
        # Zombies the runner itself holds are escaped orphans it is about to
        # reap, not zombies the server leaked.
        leaked = [z for z in monitor.zombies.values() if z.ppid != os.getpid()]
        escaped = len(collector.adopted) - adopted_before
        result = RunResult(
            mode=name,
            expected=mode.expected,
            summary=mode.summary,
            flood=flood,
            monitor=monitor.stats,
            leaked=sorted(leaked, key=lambda z: z.pid),
            settle=opts.settle,
            end=final.t,
            zombies_at_load_end=load_end.zombies,
            escaped=escaped,
        )
    finally:
        with signals_blocked():
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.stop()
            if flooder is not None and flooder.poll() is None:
                flooder.kill()
                flooder.wait()
            before = len(collector.adopted)
            srv.stop()
            poll_until(lambda: collector.collect() == 0, ORPHAN_TIMEOUT)
            orphans_at_stop = len(collector.adopted) - before
            collector.keep.discard(srv.pid)
            if flooder is not None:
                collector.keep.discard(flooder.pid)
            server_log = srv.log()
            srv.close()
    result.orphans_at_stop = orphans_at_stop
    result.server_log = server_log
    return result


def _wait_collecting(collector: OrphanCollector, interval: float, done: Any) -> None:
    """Reap adopted orphans every ``interval`` until ``done()``."""
    while not done():
        collector.collect()
        time.sleep(interval)


def run(names: list[str], opts: RunOptions, check: bool = False) -> Report:
    """Run each mode in turn (skipping the unavailable ones) and report."""
    if _platform.can_use_subreaper():
        _platform.become_subreaper()
    collector = OrphanCollector()
    report = Report(runs=[], check=check)
    with sigterm_raises():
        for name in names:
            mode = modes.get(name)
            if not mode.available():
                report.skipped[name] = mode.unavailable_reason()
                continue
            run_result = run_mode(name, opts, collector)
            if run_result.server_log:
                sys.stderr.write(run_result.server_log)
            report.runs.append(run_result)
    return report
