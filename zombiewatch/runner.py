"""Run a program (the built-in server, or any command) under load and
measure its zombies; or watch a process that is already running.

One measurement: start the target in its own session, wait until it is
ready, start the monitor, drive the load, let the settle window run, stop
the target and its whole tree, collect whatever it orphaned, and build a
``RunResult``. The runner is a child subreaper on Linux, so orphans of the
target (double-forked workers, the zombies a stopped ``none`` server
leaves) are reparented to it: it counts them as escaped and reaps them, by
pid, so it never steals the status of its own subprocesses.

Nothing outlives a run: cleanup runs in ``finally`` with SIGINT and
SIGTERM blocked, SIGTERM to the runner is turned into ``Interrupted``, and
targets get SIGTERM from the kernel if the runner is SIGKILLed
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import psutil

from zombiewatch import _defaults, _procfs, _proctl, modes, server
from zombiewatch._backoff import poll_until
from zombiewatch.errors import Interrupted, ServerStartError, ZombiewatchError
from zombiewatch.monitor import Monitor, Sample
from zombiewatch.report import CLEAR_SCREEN, Report, RunResult, render_live

READY_TIMEOUT = 10.0  # seconds for a target to be ready (ready line, or its port)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL of a target's tree
ORPHAN_TIMEOUT = 5.0  # seconds to collect the orphans of a stopped target
LIVE_REDRAW = 0.25  # seconds between two screens of --live or progress lines
CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line


@dataclass
class RunOptions:
    """Knobs of one measurement; the CLI's options map onto these."""

    connections: int = _defaults.CONNECTIONS
    concurrency: int = _defaults.CONCURRENCY
    settle: float = _defaults.SETTLE
    interval: float = _defaults.INTERVAL
    lines: int = _defaults.LINES
    child_delay: float | None = None  # None: the mode's own default
    max_children: int | None = None
    timeout: float = _defaults.TIMEOUT  # per connection
    host: str = _defaults.HOST
    max_leaked: int = _defaults.MAX_LEAKED
    grace: float | None = None
    max_zombies: int | None = None
    duration: float | None = None  # how long to watch when there is no load
    live: bool = False  # redraw a one-screen view on stdout (a terminal)
    progress: bool = False  # one self-overwriting progress line on stderr (a terminal)
    subreaper: bool = True  # be the adopter of the target's orphans (Linux)

    @property
    def flood_deadline(self) -> float:
        """Bound on the whole flood: generous, but the flood stops by itself."""
        return 60.0 + self.connections * 0.05


def log(message: str) -> None:
    """Write one log line to stderr."""
    sys.stderr.write(f"zombiewatch: {message}\n")
    sys.stderr.flush()


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
    """True once ``pid`` (our child) has exited. It is not reaped, so its
    pid and process group id cannot be reused while we look."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class Target:
    """A program we started, in its own session, that we stop with its tree."""

    def __init__(self, argv: list[str], stdout: int | IO[bytes] | None = None) -> None:
        self.argv = argv
        if stdout is None:
            # Our stdout carries only the report (--json must parse): what the
            # program prints goes to our stderr, with the logs.
            stdout = sys.stderr.fileno()
        # A file, not a pipe, so a chatty target never blocks on a full pipe
        # that nobody reads during the run. Closed in stop().
        self._log_file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=self._log_file,
                start_new_session=True,
                preexec_fn=_proctl.die_with_parent_preexec(signal.SIGTERM),
            )
        except OSError as err:
            self._log_file.close()
            raise ZombiewatchError(f"cannot run {argv[0]}: {err.strerror}") from err
        self.pid = self.proc.pid
        self.log = ""
        self.stdout_tail = b""

    def exited(self) -> bool:
        """True once the program itself has exited (its tree may live on)."""
        return self.proc.returncode is not None or _exited(self.pid)

    def failure(self) -> str:
        """One line on why the program ended early: its last stderr line."""
        self.proc.wait()
        lines = self._read_log().strip().splitlines()
        return lines[-1] if lines else f"exited with status {self.proc.returncode}"

    def _read_log(self) -> str:
        self._log_file.seek(0)
        return self._log_file.read().decode(errors="replace")

    def stop(self, tree: Callable[[], Iterable[int]]) -> None:
        """Stop the program and every process of ``tree()``, then reap it.

        The process group catches the usual case in one call; ``tree()``
        (the monitor's view: descendants and adopted members of the
        session) catches children that moved to another group. SIGTERM
        first, SIGKILL to whatever is left after the grace period.
        """
        pgid = self.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            # While the program is at worst an unreaped zombie, its pid, which
            # is also its group's id, cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            _signal_all(tree(), sig)
            if sig == signal.SIGTERM:
                poll_until(lambda: self.exited() and not any(True for _ in tree()), STOP_GRACE)
        self.proc.wait()
        if self.proc.stdout is not None:
            # What is left in the pipe; never block on a straggler holding it.
            os.set_blocking(self.proc.stdout.fileno(), False)
            self.stdout_tail = self.proc.stdout.read() or b""
            self.proc.stdout.close()
        self.log = self._read_log()
        self._log_file.close()


class ServerTarget(Target):
    """The built-in server, which prints a JSON ready line."""

    def __init__(self, config: server.Config) -> None:
        super().__init__(server.command(config), stdout=subprocess.PIPE)
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
                    raise ServerStartError(self.failure())
                buf += chunk
        self.port = int(json.loads(buf.split(b"\n", 1)[0])["port"])

    def refused(self) -> int:
        """Connections the server refused because no worker could start
        (fork failed): from its last line, after ``stop()``."""
        for line in self.stdout_tail.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "stopped":
                return int(event["refused"])
        return 0


def _listening(host: str, port: int) -> bool:
    """True if some socket listens on host:port (or on every address).

    Reads the socket table instead of connecting: a probe connection would
    be one more client, and one more child (or zombie) to count.
    """
    wildcard = ("0.0.0.0", "::", host)
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            ip, lport = conn.laddr[0], conn.laddr[1]
            if lport == port and ip in wildcard:
                return True
    return False


def wait_for_port(target: Target, host: str, port: int, timeout: float) -> None:
    """Wait until something listens on host:port; fail if ``target`` exits first."""

    def listening() -> bool:
        if target.exited():
            raise ServerStartError(f"the command exited before listening: {target.failure()}")
        return _listening(host, port)

    if not poll_until(listening, timeout, max_step=0.1):
        raise ServerStartError(f"the command did not listen on {host}:{port} within {timeout:g} s")


class OrphanCollector:
    """Reap, by pid, the orphans the kernel hands us as a subreaper.

    One per measurement, so pids reused between runs are counted again.
    """

    def __init__(self, subreaper: bool) -> None:
        self.subreaper = subreaper
        self.keep: set[int] = set()  # our own subprocesses: Popen waits for them
        self.adopted: set[int] = set()

    @property
    def adopters(self) -> list[int]:
        """Where orphans of what we start go: to us if we are a subreaper,
        else to init (or a subreaper above us, which we cannot see)."""
        return [os.getpid()] if self.subreaper else [1]

    def collect(self) -> int:
        """Reap every adopted orphan that has exited; return how many remain."""
        if not self.subreaper:
            return 0
        remaining = 0
        for pid in _procfs.read_children(os.getpid()):
            if pid in self.keep:
                continue
            self.adopted.add(pid)
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    remaining += 1
            except ChildProcessError:
                pass  # collected already
        return remaining


class Load:
    """Load driven while the monitor watches: a subprocess of ours.

    ``kind`` is "flood" (the built-in flooder, whose JSON result is read
    back) or "command" (the user's ``--load``, whose exit status is
    reported apart from the zombie verdict).
    """

    def __init__(
        self,
        argv: list[str],
        collector: OrphanCollector,
        kind: str,
        deadline: float | None = None,
        progress: bool = False,
    ) -> None:
        self.kind = kind
        self._interrupted = False
        self.deadline = None if deadline is None else time.monotonic() + deadline
        self.done_count: int | None = None  # connections finished, if the load says
        self.progress_r: int | None = None
        progress_w = None
        if progress:
            # The flooder writes its count of finished connections here.
            self.progress_r, progress_w = os.pipe()
            os.set_blocking(self.progress_r, False)
            argv = [*argv, "--progress-fd", str(progress_w)]
        self._out = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        try:
            # Its own session: a Ctrl-C at the terminal reaches the runner
            # alone, which then stops the load as part of its cleanup.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._out if kind == "flood" else sys.stderr.fileno(),
                start_new_session=True,
                preexec_fn=_proctl.die_with_parent_preexec(signal.SIGKILL),
                pass_fds=() if progress_w is None else (progress_w,),
            )
        except OSError as err:
            self._out.close()
            raise ZombiewatchError(f"cannot run the load {argv[0]}: {err.strerror}") from err
        finally:
            if progress_w is not None:
                os.close(progress_w)  # the load's copy is the only writer now
        self._collector = collector
        collector.keep.add(self.proc.pid)

    def read_progress(self) -> None:
        """Take the latest count the load wrote to its progress pipe."""
        if self.progress_r is None:
            return
        try:
            data = os.read(self.progress_r, 65536)
        except BlockingIOError:
            return
        counts = data.split()
        if counts:
            self.done_count = int(counts[-1])

    def done(self) -> bool:
        """True once the load has finished by itself. It is left unreaped
        until ``stop()``, so its pid (its group's id) stays its own."""
        if _exited(self.proc.pid):
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ZombiewatchError("the flooder overran its own deadline and was stopped")
        return False

    def _signal_group(self, sig: int) -> None:
        # Unreaped, the load's pid (its group's id) cannot have been reused.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def interrupt(self) -> None:
        """Ask the load to end now: SIGTERM to its process group (a
        ``--load`` shell and what it started). The flooder then stops
        connecting and still writes what it did. Sent once: a second
        SIGTERM must not cut the flooder's report short."""
        if not self._interrupted:
            self._interrupted = True
            self._signal_group(signal.SIGTERM)

    def stop(self) -> None:
        """End the load and whatever it left in its process group, and
        collect it: SIGTERM (once), up to ``STOP_GRACE`` seconds for the
        load itself to exit, then SIGKILL to what is left of the group.
        A load that ended by itself leaves at most background jobs there."""
        self.interrupt()
        poll_until(lambda: _exited(self.proc.pid), STOP_GRACE)
        self._signal_group(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        """Forget the load (after ``stop()``)."""
        self._collector.keep.discard(self.proc.pid)
        self._out.close()
        if self.progress_r is not None:
            os.close(self.progress_r)
            self.progress_r = None

    def flood_result(self) -> dict[str, Any]:
        """The flooder's JSON result (after ``stop()``)."""
        # 0: every answer right; 1: some wrong; 3: none connected;
        # 130: stopped by interrupt(). Each prints its result first.
        if self.proc.returncode not in (0, 1, 3, 130):
            raise ZombiewatchError(f"the flooder failed (status {self.proc.returncode})")
        self._out.seek(0)
        result: dict[str, Any] = json.loads(self._out.read())
        return result


def flood_load(host: str, port: int, opts: RunOptions, collector: OrphanCollector) -> Load:
    """The built-in flooder, in its own process so it has a core of its own."""
    argv = [
        sys.executable, "-m", "zombiewatch", "flood",
        "--host", host, "--port", str(port),
        "--connections", str(opts.connections), "--concurrency", str(opts.concurrency),
        "--lines", str(opts.lines), "--timeout", str(opts.timeout),
        "--deadline", str(opts.flood_deadline), "--json",
    ]  # fmt: skip
    # The flooder stops itself at its deadline; this bound only catches a
    # flooder that hangs anyway.
    deadline = opts.flood_deadline + 30
    return Load(argv, collector, kind="flood", deadline=deadline, progress=opts.progress)


def _draw_live(monitor: Monitor, elapsed: float) -> None:
    with monitor.lock:
        zombies = list(monitor.zombies.values())
    name = " ".join(monitor.root_cmdline) or f"pid {monitor.root}"
    screen = render_live(name, monitor.stats, zombies, elapsed)
    sys.stdout.write(CLEAR_SCREEN + screen)
    sys.stdout.flush()


def _draw_progress(monitor: Monitor, load: Load | None, opts: RunOptions, elapsed: float) -> None:
    last = monitor.stats.last
    zombies = last.zombies if last else 0
    done = ""
    if load is not None and load.done_count is not None:
        done = f"{load.done_count}/{opts.connections} connections, "
    sys.stderr.write(f"{CLEAR_LINE}zombiewatch: {elapsed:6.1f} s, {done}{zombies} zombies now")
    sys.stderr.flush()


@dataclass
class Observation:
    """What one observation phase ended with."""

    load_end: Sample
    final: Sample
    started: float
    stopped_early: str | None = None  # why, if a rule ended the load early


def observe(
    monitor: Monitor,
    collector: OrphanCollector,
    opts: RunOptions,
    load_done: Callable[[], bool],
    load: Load | None = None,
    interrupt_ends_load: bool = False,
) -> Observation:
    """Watch until ``load_done()``, then through the settle window.

    ``--max-zombies`` ends the load phase as soon as that many zombies
    exist at once: the verdict is already known, and the load is told to
    stop. With ``interrupt_ends_load``, Ctrl-C (or SIGTERM) ends the load
    phase too, and the settle window still runs.
    """
    started = time.monotonic()
    stopped_early = None
    redraw_at = started

    def tick(force: bool = False) -> None:
        nonlocal redraw_at
        collector.collect()
        if time.monotonic() < redraw_at and not force:
            return
        redraw_at = time.monotonic() + LIVE_REDRAW
        if opts.live:
            _draw_live(monitor, time.monotonic() - started)
        elif opts.progress:
            if load is not None:
                load.read_progress()
            _draw_progress(monitor, load, opts, time.monotonic() - started)

    def load_over() -> bool:
        nonlocal stopped_early
        tick()
        if opts.max_zombies is not None and monitor.stats.peak_zombies >= opts.max_zombies:
            stopped_early = f"{monitor.stats.peak_zombies} zombies at once"
            return True
        return load_done()

    try:
        while not load_over():
            time.sleep(opts.interval)
    except (KeyboardInterrupt, Interrupted):
        if not interrupt_ends_load:
            raise
    if stopped_early and load is not None:
        load.interrupt()  # the verdict is known: no more zombies to make
    load_end = monitor.sample()
    tick(force=True)  # show where the load ended, however short the settle
    settle_deadline = time.monotonic() + opts.settle

    def settled() -> bool:
        # Past the window, or the monitor's latest sample found nothing that
        # could still become or stay a zombie: ending early changes no count.
        tick()
        last = monitor.stats.last
        assert last is not None
        empty = last.t > load_end.t and last.live == 0 and last.zombies == 0
        return empty or time.monotonic() >= settle_deadline

    while not settled():
        time.sleep(opts.interval)
    if opts.live:
        sys.stdout.write(CLEAR_SCREEN)  # the report replaces the live screen
    if opts.progress:
        sys.stderr.write(CLEAR_LINE)
    monitor.stop()
    collector.collect()
    final = monitor.sample()
    return Observation(load_end, final, started, stopped_early)


def _result(
    name: str,
    monitor: Monitor,
    obs: Observation,
    opts: RunOptions,
    flood: dict[str, Any],
    escaped: int,
    listen_before: dict[str, int] | None,
) -> RunResult:
    # Zombies an adopter holds (the runner, about to reap them, or init)
    # are orphans that escaped the target, not zombies it failed to collect.
    leaked = [z for z in monitor.zombies.values() if not z.adopted]
    listen_after = _procfs.listen_queue_counters()
    listen = None
    if listen_before is not None and listen_after is not None:
        listen = {key: listen_after[key] - listen_before[key] for key in listen_before}
    return RunResult(
        mode=name,
        expected=None,
        summary="",
        flood=flood,
        monitor=monitor.stats,
        leaked=sorted(leaked, key=lambda z: z.pid),
        settle=opts.settle,
        end=obs.final.t,
        duration=obs.load_end.t - obs.started,
        load_end=obs.load_end.t,
        zombies_at_start=monitor.stats.timeline[0].zombies if monitor.stats.timeline else 0,
        zombies_at_load_end=obs.load_end.zombies,
        escaped=escaped,
        max_leaked=opts.max_leaked,
        grace=opts.grace,
        max_zombies=opts.max_zombies,
        max_age=max(
            [monitor.stats.max_lifetime, *(z.age(obs.final.t) for z in monitor.zombies.values())]
        ),
        listen_queue=listen,
        stopped_early=obs.stopped_early,
    )


def measure(
    name: str,
    target: Target,
    opts: RunOptions,
    collector: OrphanCollector,
    start_load: Callable[[], Load | None],
    ready: Callable[[], None] = lambda: None,
    must_survive: bool = False,
) -> RunResult:
    """Measure ``target`` under the load ``start_load()`` returns; stop it after.

    With ``must_survive`` (the built-in server), a target that exits during
    the run makes the measurement void: its zombies would have escaped.
    """
    monitor: Monitor | None = None
    load: Load | None = None
    collector.keep.add(target.pid)
    try:
        ready()
        monitor = Monitor(target.pid, adopters=collector.adopters, interval=opts.interval)
        listen_before = _procfs.listen_queue_counters()
        # The load starts before the sampling thread: subprocess's
        # preexec_fn is only safe while the process has one thread. The
        # load needs a moment to start its interpreter, so the first sample
        # still comes before the first connection.
        load = start_load()
        monitor.start()
        if load is not None:
            # A server that dies ends the measurement at once: waiting for
            # the flood to fail every remaining connection tells nothing.
            running_load = load
            obs = observe(
                monitor,
                collector,
                opts,
                lambda: running_load.done() or (must_survive and target.exited()),
                load,
            )
        else:
            deadline = None if opts.duration is None else time.monotonic() + opts.duration

            def ended() -> bool:
                # No load: watch until the program ends (its tree may live on
                # and is still watched through the settle window) or for
                # --duration.
                return target.exited() or (deadline is not None and time.monotonic() >= deadline)

            obs = observe(monitor, collector, opts, ended)
        if must_survive and target.exited():
            raise ZombiewatchError(f"the server exited during the run: {target.failure()}")
        flood: dict[str, Any] = {}
        if load is not None:
            load.stop()  # interrupted already if --max-zombies ended the load early
            if load.kind == "flood" and not (obs.stopped_early and load.proc.returncode < 0):
                # A flooder killed by a signal when stopped early (before
                # its SIGTERM handler was set, or past the grace) left no
                # result.
                flood = load.flood_result()
        if collector.subreaper:
            # Every orphan came to us, and we reaped each: the exact count.
            # The monitor saw only those adopted at one of its samples; an
            # orphan that exited and was reaped in between is added here.
            seen = sum(monitor.stats.escaped.values())
            monitor.stats.add_unseen_escapes(os.getpid(), len(collector.adopted) - seen)
        escaped = sum(monitor.stats.escaped.values())
        result = _result(name, monitor, obs, opts, flood, escaped, listen_before)
        if load is not None and load.kind == "command":
            result.load_status = load.proc.returncode
        if target.exited():
            result.target_status = target.proc.wait()
    finally:
        with signals_blocked():
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.stop()
            if load is not None:
                load.stop()
                load.close()
            before = len(collector.adopted)
            target.stop(monitor.tree if monitor is not None else tuple)
            if monitor is not None:
                monitor.close()  # its last use was the tree() just above
            poll_until(lambda: collector.collect() == 0, ORPHAN_TIMEOUT)
            orphans_at_stop = len(collector.adopted) - before
            collector.keep.discard(target.pid)
    result.orphans_at_stop = orphans_at_stop
    result.target_log = target.log
    return result


def run_mode(name: str, opts: RunOptions, collector: OrphanCollector) -> RunResult:
    """Measure the built-in server in mode ``name`` under the built-in flood."""
    mode = modes.get(name)
    child_delay = mode.child_delay if opts.child_delay is None else opts.child_delay
    config = server.Config(
        mode=name, host=opts.host, port=0, max_children=opts.max_children, child_delay=child_delay
    )
    target = ServerTarget(config)

    def ready() -> None:
        target.wait_ready()
        log(f"{name}: server pid {target.pid} listening on {opts.host}:{target.port}")

    result = measure(
        name,
        target,
        opts,
        collector,
        lambda: flood_load(opts.host, target.port, opts, collector),
        ready,
        must_survive=True,
    )
    result.expected = mode.expected
    result.summary = mode.summary
    result.fork_failures = target.refused()
    return result


@contextlib.contextmanager
def orphan_collector(wanted: bool = True) -> Iterator[OrphanCollector]:
    """Be a child subreaper for one measurement, where the platform allows."""
    subreaper = wanted and _proctl.set_subreaper(True)
    if wanted and not subreaper:
        log("no child subreaper on this platform: orphans go to PID 1")
    try:
        yield OrphanCollector(subreaper)
    finally:
        if subreaper:
            _proctl.set_subreaper(False)


def run(names: list[str], opts: RunOptions, check: bool = False) -> Report:
    """Run each mode in turn (skipping the unavailable ones) and report."""
    report = Report(runs=[], check=check)
    with sigterm_raises():
        for name in names:
            mode = modes.get(name)
            if not mode.available():
                report.skipped[name] = mode.unavailable_reason()
                continue
            with orphan_collector() as collector:
                result = run_mode(name, opts, collector)
            if result.target_log:
                sys.stderr.write(result.target_log)
            report.runs.append(result)
    return report


def run_command(
    argv: list[str],
    opts: RunOptions,
    flood_to: tuple[str, int] | None = None,
    load_command: str | None = None,
    wait_port: tuple[str, int] | None = None,
) -> Report:
    """Measure any program: ``zombiewatch run -- CMD``."""
    with sigterm_raises(), orphan_collector(opts.subreaper) as collector:
        target = Target(argv)
        log(f"started {argv[0]} as pid {target.pid}")

        def ready() -> None:
            if wait_port is not None:
                wait_for_port(target, *wait_port, timeout=READY_TIMEOUT)

        def start_load() -> Load | None:
            if flood_to is not None:
                return flood_load(*flood_to, opts, collector)
            if load_command is not None:
                # The user wrote a shell command line: a shell runs it.
                return Load(["/bin/sh", "-c", load_command], collector, kind="command")
            return None

        result = measure(" ".join(argv), target, opts, collector, start_load, ready)
    return Report(runs=[result])


def watch(pid: int, opts: RunOptions) -> Report:
    """Watch a running process and its tree; start and stop nothing.

    Ctrl-C (or ``--duration``) ends the watch; the settle window follows
    and the report is printed: an interrupted watch is a finished watch.
    """
    adopters = [1] if pid != 1 else []  # orphans of the tree go to init
    monitor = Monitor(pid, adopters=adopters, interval=opts.interval)
    collector = OrphanCollector(subreaper=False)  # starts nothing, adopts nothing
    deadline = None if opts.duration is None else time.monotonic() + opts.duration

    def over() -> bool:
        gone = _proctl.session_of(pid) is None
        return gone or (deadline is not None and time.monotonic() >= deadline)

    monitor.start()
    listen_before = _procfs.listen_queue_counters()
    with sigterm_raises():
        try:
            obs = observe(monitor, collector, opts, over, interrupt_ends_load=True)
        finally:
            with contextlib.suppress(Exception):
                monitor.stop()
            monitor.close()
    result = _result(f"pid {pid}", monitor, obs, opts, {}, 0, listen_before)
    return Report(runs=[result])
