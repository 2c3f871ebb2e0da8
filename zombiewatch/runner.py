"""Measure a program's zombies: one measurement, from start to verdict.

One measurement: start the target in its own session, wait until it is
ready, start the monitor, drive the load, let the settle window run, stop
the target and its whole tree, collect whatever it orphaned, and build a
``RunResult``. The runner is a child subreaper on Linux, so orphans of the
target (double-forked workers, the zombies a stopped ``none`` server
leaves) are reparented to it: it counts them as escaped and reaps them, by
pid, so it never steals the status of its own subprocesses. It also
watches a process that is already running (``watch``).

What is started and stopped (targets, their orphans, the guard on
signals) is ``targets``; the load is ``loads``; what the terminal shows
meanwhile is ``live``. This module holds the measuring loop and when to
redraw.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from zombiewatch import (
    _cnproc,
    _containment,
    _defaults,
    _procfs,
    _proctl,
    _record,
    _text,
    modes,
    server,
)
from zombiewatch import flood as flooder
from zombiewatch._backoff import poll_until
from zombiewatch._names import program_name, server_title
from zombiewatch._output import CommandOutput
from zombiewatch._text import log as log  # re-exported: the CLI logs through runner.log
from zombiewatch.errors import Interrupted, ZombieTargetError, ZombiewatchError
from zombiewatch.live import (
    CLEAR_LINE,
    DONE,
    ENTER_SCREEN,
    LEAVE_SCREEN,
    LOAD,
    SETTLE,
    WATCH,
    Phase,
    frame,
    render_live,
    render_progress,
)
from zombiewatch.loads import CommandLoad, FloodLoad, Load
from zombiewatch.monitor import Sample, TreeWatcher, Zombie
from zombiewatch.observe import listen_early, open_monitor
from zombiewatch.report import Report, RunResult, shell_join
from zombiewatch.targets import (
    READY_TIMEOUT,
    STOP_GRACE,
    OrphanCollector,
    ServerTarget,
    Target,
    orphan_collector,
    signals_blocked,
    sigterm_raises,
    wait_for_port,
)

ORPHAN_TIMEOUT = 5.0  # seconds to collect the orphans of a stopped target
LIVE_REDRAW = 0.25  # seconds between two screens of --live or progress lines
# Seconds between two checks of the control loop at most, whatever
# --interval says: the load's end, --duration and the settle window are
# seen on time even when samples are seconds apart. The loop checks every
# --interval only when something must be done that often: orphans to
# collect as a subreaper, namespace pids to record (--pid1), or
# --max-zombies to enforce. Otherwise (watch PID) each of its wake-ups
# would cost the watcher as much as a timeline point does (docs/FACTS.md,
# Kernel events: a timer wake-up).
CONTROL_STEP = 0.05


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
    conn_timeout: float = _defaults.CONN_TIMEOUT  # the server's whole-connection deadline
    timeout: float = _defaults.TIMEOUT  # per connection
    host: str = _defaults.HOST
    max_leaked: int = _defaults.MAX_LEAKED
    grace: float | None = None
    max_zombies: int | None = None
    duration: float | None = None  # how long to watch when there is no load
    ready_timeout: float = READY_TIMEOUT  # seconds for `run`'s CMD to listen
    live: bool = False  # redraw a one-screen view on stdout (a terminal)
    progress: bool = False  # one self-overwriting progress line on stderr (a terminal)
    subreaper: bool = True  # be the adopter of the target's orphans (Linux)
    observe: str = _defaults.OBSERVE  # auto, events or sample (see observe.py)
    ground_truth: bool = False  # the built-in server records each child (_record.py)
    max_failed: float = 0  # --max-failed: connections allowed to fail ...
    max_failed_percent: bool = False  # ... as a count, or a percentage of them
    half_close: bool = False  # the flooder half-closes after sending (--half-close)
    cmd_output: str | None = None  # run: CMD's output to this file, not prefixed to stderr
    name: str | None = None  # run, watch: --name, the JUnit testcase's name

    @property
    def flood_deadline(self) -> float:
        """Bound on the whole flood: generous, but the flood stops by itself."""
        return flooder.default_deadline(self.connections)


def flood_load(host: str, port: int, opts: RunOptions, collector: OrphanCollector) -> FloodLoad:
    """The built-in flooder against host:port, as ``opts`` say."""
    config = flooder.Config(
        host=host, port=port, connections=opts.connections, concurrency=opts.concurrency,
        lines=opts.lines, timeout=opts.timeout, deadline=opts.flood_deadline,
        half_close=opts.half_close,
    )  # fmt: skip
    # The progress line and the --live screen both say the connections done.
    return FloodLoad(config, collector, progress=opts.progress or opts.live)


class _Display:
    """When to redraw the ``--live`` screen or the progress line, and where.

    What they say is ``live``'s; this only times and writes them, and
    keeps the phase the run is in.
    """

    def __init__(
        self, monitor: TreeWatcher, load: Load | None, opts: RunOptions, title: str
    ) -> None:
        self.monitor = monitor
        self.load = load
        self.opts = opts
        self.title = title
        self.started = time.monotonic()
        self.redraw_at = self.started
        self.phase = LOAD if load is not None else WATCH
        self.settle_deadline: float | None = None

    def settling(self, deadline: float) -> None:
        """The load is over: the settle window runs until ``deadline``."""
        self.phase, self.settle_deadline = SETTLE, deadline

    def update(self, force: bool = False) -> None:
        """Redraw if ``LIVE_REDRAW`` has passed since the last time (or ``force``)."""
        if time.monotonic() < self.redraw_at and not force:
            return
        self.redraw_at = time.monotonic() + LIVE_REDRAW
        elapsed = time.monotonic() - self.started
        if self.opts.live:
            self._draw_live(elapsed)
        elif self.opts.progress:
            self._draw_progress(elapsed)

    def _draw_live(self, elapsed: float) -> None:
        monitor = self.monitor
        with monitor.lock:
            zombies = list(monitor.zombies.values())
        flood = isinstance(self.load, FloodLoad)
        left = None
        if self.settle_deadline is not None:
            left = max(0.0, self.settle_deadline - time.monotonic())
        phase = Phase(
            self.phase,
            done=self.load.progress() if self.load is not None else None,
            connections=self.opts.connections if flood else None,
            settle_left=left,
            settle=self.opts.settle,
        )
        width = _columns()
        screen = render_live(self.title, phase, monitor.stats, zombies, elapsed, width)
        _text.write("stdout", frame(screen))

    def _draw_progress(self, elapsed: float) -> None:
        last = self.monitor.stats.last
        done = self.load.progress() if self.load is not None else None
        line = render_progress(elapsed, last.zombies if last else 0, done, self.opts.connections)
        _text.write("stderr", line)

    def finish(self) -> None:
        """The watch is over: say so on the live screen (it stays up while
        the run stops what it started), or make room for the report."""
        if self.opts.live:
            self.phase = DONE
            self.update(force=True)
        if self.opts.progress:
            _text.write("stderr", CLEAR_LINE)


def _columns() -> int:
    """The terminal's width now, asked of the terminal itself: $COLUMNS,
    which shutil.get_terminal_size reads first, is not updated when the
    window is resized, nor passed on by every shell. A terminal that says
    0 (a new pty nobody sized) gets shutil's answer: $COLUMNS, or 80."""
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, closed, or no stdout
        columns = 0
    return columns or shutil.get_terminal_size().columns


@contextlib.contextmanager
def live_screen(opts: RunOptions) -> Iterator[None]:
    """Draw ``--live`` on the terminal's alternate screen while the body
    runs, and give the normal screen back however it ends (the report,
    Ctrl-C, an error), so the report lands on a clean terminal."""
    if not opts.live:
        yield
        return
    _text.write("stdout", ENTER_SCREEN)
    try:
        yield
    finally:
        _text.write("stdout", LEAVE_SCREEN)


@dataclass
class Observation:
    """What one observation phase ended with."""

    load_end: Sample
    final: Sample
    started: float
    stopped_early: str | None = None  # why, if a rule ended the load early
    max_zombies_hit: int | None = None  # the count that ended it, if --max-zombies did


def observe(
    monitor: TreeWatcher,
    collector: OrphanCollector,
    opts: RunOptions,
    load_done: Callable[[], bool],
    load: Load | None = None,
    interrupt_ends_load: bool = False,
    title: str = "",
) -> Observation:
    """Watch until ``load_done()``, then through the settle window.

    ``--max-zombies`` ends the load phase as soon as that many zombies
    exist at once: the verdict is already known, and the load is told to
    stop. With ``interrupt_ends_load``, Ctrl-C (or SIGTERM) ends the load
    phase too, and the settle window still runs. ``title`` heads the
    ``--live`` screen.
    """
    display = _Display(monitor, load, opts, title or f"pid {monitor.root}")
    started = display.started

    def tick(force: bool = False) -> None:
        collector.collect()
        display.update(force)

    every_interval = collector.works or opts.max_zombies is not None
    step = min(opts.interval, CONTROL_STEP) if every_interval else CONTROL_STEP
    hit = _watch_load(monitor, opts, load_done, tick, interrupt_ends_load, step)
    stopped_early = None if hit is None else f"{hit} zombies at once"
    if stopped_early and load is not None:
        load.interrupt()  # the verdict is known: no more zombies to make
    load_end = monitor.sample()
    settle_deadline = time.monotonic() + opts.settle
    display.settling(settle_deadline)
    tick(force=True)  # show where the load ended, however short the settle
    _settle(monitor, opts, load_end, settle_deadline, tick, step)
    display.finish()
    monitor.stop()
    collector.collect()
    final = monitor.sample()
    return Observation(load_end, final, started, stopped_early, hit)


def _watch_load(
    monitor: TreeWatcher,
    opts: RunOptions,
    load_done: Callable[[], bool],
    tick: Callable[[], None],
    interrupt_ends_load: bool,
    step: float,
) -> int | None:
    """Sample until the load is done; return the zombies at once that made
    --max-zombies end it early, if it did."""
    stopped_early = None

    def load_over() -> bool:
        nonlocal stopped_early
        tick()
        if opts.max_zombies is not None and monitor.stats.peak_zombies >= opts.max_zombies:
            stopped_early = monitor.stats.peak_zombies
            return True
        return load_done()

    try:
        while not load_over():
            time.sleep(step)
    except (KeyboardInterrupt, Interrupted):
        if not interrupt_ends_load:
            raise
    return stopped_early


def _settle(
    monitor: TreeWatcher,
    opts: RunOptions,
    load_end: Sample,
    settle_deadline: float,
    tick: Callable[[], None],
    step: float,
) -> None:
    """Sample through the settle window that follows the load, until
    ``settle_deadline`` (monotonic), and past it while a zombie present has
    not been one for the whole window: a child that exited late in the
    window gets all of it to be collected (up to one window more), so
    whether it counts as leaked does not hang on when it was scheduled."""
    last_deadline = settle_deadline + opts.settle

    def settled() -> bool:
        # The monitor's latest sample found nothing that could still become
        # or stay a zombie (ending early changes no count), or every zombie
        # present has had its window, or the extra window is over too.
        tick()
        last = monitor.stats.last
        assert last is not None
        if last.t > load_end.t and last.live == 0 and last.zombies == 0:
            # Asked once more before the window ends early: the event
            # monitor's background ticks look at an empty tree only now and
            # then (events.EMPTY_WALK), a sample always.
            look = monitor.sample()
            if look.live == 0 and look.zombies == 0:
                return True
        now = time.monotonic()
        if now < settle_deadline:
            return False
        youngest = _youngest_held(monitor)
        return youngest is None or now - youngest >= opts.settle or now >= last_deadline

    while not settled():
        deadline = settle_deadline if time.monotonic() < settle_deadline else last_deadline
        time.sleep(_control_step(step, deadline))


def _youngest_held(monitor: TreeWatcher) -> float | None:
    """When the youngest zombie its creator still holds became one
    (monotonic, as ``leaks`` counts it), or None if there is none."""
    with monitor.lock:
        born = [z.since - _born_early(monitor) for z in _held(monitor)]
    return max(born, default=None)


def _held(monitor: TreeWatcher) -> list[Zombie]:
    """The zombies present that their creator holds. Those an adopter holds
    are orphans that escaped, unless the target itself adopted them, as
    PID 1 of a namespace (``run --pid1``)."""
    return [z for z in monitor.zombies.values() if not z.adopted or z.ppid == monitor.root]


def _born_early(monitor: TreeWatcher) -> float:
    """How long before its ``since`` a zombie may have become one: a sampled
    zombie up to an interval before the sample that first saw it."""
    return 0.0 if monitor.stats.method == "events" else monitor.interval


def _control_step(step: float, deadline: float | None = None) -> float:
    """How long the control loop sleeps: ``step``, but never past ``deadline``."""
    if deadline is not None:
        step = min(step, max(0.0, deadline - time.monotonic()))
    return step


def _result(
    name: str,
    monitor: TreeWatcher,
    obs: Observation,
    opts: RunOptions,
    flood: dict[str, Any],
    escaped: int,
    listen_before: dict[str, int] | None,
) -> RunResult:
    leaked, unsettled = leaks(monitor, obs.final.t, opts.settle)
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
        leaked=leaked,
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
        max_zombies_hit=obs.max_zombies_hit,
        unsettled=unsettled,
        leaked_unlisted=monitor.handed_off_unlisted,
        max_failed=opts.max_failed,
        max_failed_percent=opts.max_failed_percent,
    )


def leaks(monitor: TreeWatcher, end: float, settle: float) -> tuple[list[Zombie], int]:
    """The zombies leaked by the end of a watch, and how many present then
    were younger than the settle window (docs/DESIGN.md, Verdict rules).

    Leaked: a zombie its creator still holds that has been one for the
    settle window or longer (one born during the window is not yet
    leaked); and one its creator exited without collecting, handed to an
    adopter, whoever collected it after: with kernel events when the
    creator held it ``monitor.EXIT_SLACK`` or longer (the creator never
    collected it, and was not already exiting when it died: not running
    or waiting for a CPU then), else if the creator held it for the settle
    window or longer (``TreeWatcher.handoff_bound``). Zombies an adopter
    holds from the start (the runner, or init) are orphans that escaped,
    not leaks; unless the target itself adopted them, as PID 1 of a
    namespace (``run --pid1``).
    """
    held = _held(monitor)
    # Given the time a sampled zombie may have been one unseen, so that one
    # born just before the window is not taken for one born in it.
    early = _born_early(monitor)
    settled = [z for z in held if z.age(end) + early >= settle]
    handed = [z for z in monitor.handed_off if z.age(end) >= monitor.handoff_bound(z, settle)]
    return sorted(settled + handed, key=lambda z: z.pid), len(held) - len(settled)


@dataclass
class _Measurement:
    """What one measurement has started, so that teardown stops just that."""

    target: Target
    collector: OrphanCollector
    box: _containment.Box
    monitor: TreeWatcher | None = None
    # Listening to kernel events since before the target started (run).
    connector: _cnproc.Connector | None = None
    load: Load | None = None
    listen_before: dict[str, int] | None = None
    target_ended_in_load: bool = False  # the program exited while the load ran


def measure(
    name: str,
    target: Target,
    opts: RunOptions,
    collector: OrphanCollector,
    box: _containment.Box,
    start_load: Callable[[], Load | None],
    ready: Callable[[], None] = lambda: None,
    must_survive: bool = False,
    title: str = "",
    connector: _cnproc.Connector | None = None,
) -> RunResult:
    """Measure ``target`` under the load ``start_load()`` returns; stop it after.

    ``title`` heads the ``--live`` screen (by default: ``name``);
    ``connector`` (``observe.listen_early``) has listened to kernel events
    since before the target started, and is closed here either way.

    ``box`` holds all the run starts (``_containment``): at the end all of
    it is stopped, not only the target's tree. With ``must_survive`` (the
    built-in server), a target that exits during the run makes the
    measurement void: its zombies would have escaped.
    """
    m = _Measurement(target, collector, box, connector=connector)
    collector.keep.add(target.pid)
    try:
        _start(m, opts, start_load, ready)
        obs = _observe_target(m, opts, must_survive, title or name)
        result = _measured(name, m, obs, opts)
    finally:
        orphans_at_stop = _teardown(m)
    result.orphans_at_stop = orphans_at_stop
    result.target_log = target.log
    result.target_tail = target.tail()
    return result


def _start(
    m: _Measurement,
    opts: RunOptions,
    start_load: Callable[[], Load | None],
    ready: Callable[[], None],
) -> None:
    """Wait for the target, then start the load and the monitor's sampling."""
    ready()
    m.monitor = open_monitor(
        m.target.pid, m.collector.adopters, opts.interval, opts.observe, log, m.connector
    )
    m.monitor.settle = opts.settle
    if m.collector.subreaper:
        m.monitor.adopter_reaps = m.collector.collecting
    if opts.ground_truth and m.monitor.stats.method == "events":
        m.monitor.stats.reaps = {}  # each child's exit and reap, for the comparison
    m.listen_before = _procfs.listen_queue_counters()
    # The load starts before the sampling thread: subprocess's
    # preexec_fn is only safe while the process has one thread. The
    # load needs a moment to start its interpreter, so the first sample
    # still comes before the first connection.
    m.load = start_load()
    m.monitor.start()


def _observe_target(
    m: _Measurement, opts: RunOptions, must_survive: bool, title: str
) -> Observation:
    """Watch through the load (or, without one, the target's life) and the settle."""
    assert m.monitor is not None
    target, load = m.target, m.load
    if load is not None:

        def load_done() -> bool:
            # A server that dies ends the measurement at once: waiting for
            # the flood to fail every remaining connection tells nothing.
            # Any other program may have handed its work to a daemon: the
            # load goes on, and the verdict says the program ended.
            if not m.target_ended_in_load and target.exited():
                m.target_ended_in_load = True
            return load.done() or (must_survive and m.target_ended_in_load)

        obs = observe(m.monitor, m.collector, opts, load_done, load, title=title)
    else:
        deadline = None if opts.duration is None else time.monotonic() + opts.duration

        def ended() -> bool:
            # No load: watch until the program ends (its tree may live on
            # and is still watched through the settle window) or for
            # --duration.
            return target.exited() or (deadline is not None and time.monotonic() >= deadline)

        obs = observe(m.monitor, m.collector, opts, ended, title=title)
    if must_survive and target.exited():
        raise ZombiewatchError(f"the server exited during the run: {target.failure()}")
    return obs


def _measured(name: str, m: _Measurement, obs: Observation, opts: RunOptions) -> RunResult:
    """Stop the load, read what it reports, and build the result."""
    assert m.monitor is not None
    monitor, collector, load = m.monitor, m.collector, m.load
    flood: dict[str, Any] = {}
    if load is not None:
        load.stop()  # interrupted already if --max-zombies ended the load early
        flood = load.flood_result(stopped_early=obs.stopped_early is not None)
    if collector.subreaper:
        # Every orphan came to us, and we reaped each: the exact count.
        # The monitor saw only those adopted at one of its samples; an
        # orphan that exited and was reaped in between is added here.
        seen = sum(monitor.stats.escaped.values())
        monitor.stats.add_unseen_escapes(os.getpid(), len(collector.adopted) - seen)
    escaped = sum(monitor.stats.escaped.values())
    result = _result(name, monitor, obs, opts, flood, escaped, m.listen_before)
    if load is not None:
        result.load_status = load.status()
    if m.target.exited():
        result.target_status = m.target.proc.wait()
    if m.target_ended_in_load and not obs.stopped_early:
        result.target_ended = _ended(result.target_status, obs.load_end.live)
    return result


def _ended(status: int | None, live: int) -> str | None:
    """What a program that exited during the load ended with, as the target
    rule says it; None for one that exited 0 and left its tree serving (a
    daemon's launcher)."""
    if status is not None and status < 0:
        return f"was killed by signal {-status}"
    if status:
        return f"exited with status {status}"
    return None if live else "exited with status 0 and left nothing running"


def _teardown(m: _Measurement) -> int:
    """Stop everything the measurement started; return the orphans at stop.

    Runs whatever happened before, with SIGINT and SIGTERM held until the
    target's tree is stopped and its orphans collected. Stopped with the
    target: every process the run started that is still there, whatever
    session or group it moved to (a daemon of the target or of the load,
    adopted by the runner or held in the run's cgroup).
    """
    monitor, load, collector, box = m.monitor, m.load, m.collector, m.box
    if m.connector is not None:
        m.connector.close()  # the watcher's, closed with it; or never given to one
    with signals_blocked():
        if monitor is not None:
            with contextlib.suppress(Exception):
                monitor.stop()
        if load is not None:
            load.stop()
            load.close()
        before = len(collector.adopted)

        def tree() -> list[int]:
            # Zombies are dead already: the wait is for what still runs.
            watched = _containment.live(monitor.tree()) if monitor is not None else []
            return [*watched, *box.members()]

        m.target.stop(tree)
        # Whatever a dying process forked after the last listing.
        box.stop_all(STOP_GRACE)
        if monitor is not None:
            monitor.close()  # its last use was the tree() just above
        poll_until(lambda: collector.collect() == 0, ORPHAN_TIMEOUT)
        orphans_at_stop = len(collector.adopted) - before
        collector.keep.discard(m.target.pid)
    return orphans_at_stop


def run_mode(
    name: str, opts: RunOptions, collector: OrphanCollector, box: _containment.Box
) -> RunResult:
    """Measure the built-in server in mode ``name`` under the built-in flood."""
    mode = modes.get(name)
    child_delay = mode.child_delay if opts.child_delay is None else opts.child_delay
    record = None
    if opts.ground_truth:
        fd, record = tempfile.mkstemp(prefix=f"zombiewatch-{name}-", suffix=".record")
        os.close(fd)
    config = server.Config(
        mode=name,
        host=opts.host,
        port=0,
        max_children=opts.max_children,
        child_delay=child_delay,
        conn_timeout=opts.conn_timeout,
        record=record,
    )
    target = ServerTarget(config)

    def ready() -> None:
        target.wait_ready()
        log(f"{name}: server pid {target.pid} listening on {opts.host}:{target.port}")

    try:
        result = measure(
            name,
            target,
            opts,
            collector,
            box,
            lambda: flood_load(opts.host, target.port, opts, collector),
            ready,
            must_survive=True,
            title=server_title(name),
        )
        if record is not None:
            # Read after the teardown: the server's last reaps are in it.
            result.ground_truth = _record.compare(_record.read(record), result.monitor.reaps)
    finally:
        if record is not None:
            os.unlink(record)
    result.expected = mode.expected
    result.summary = mode.summary
    result.fork_failures = target.refused()
    result.accept_pauses = target.accept_pauses()
    return result


def run(names: list[str], opts: RunOptions, check: bool = False) -> Report:
    """Run each mode in turn (skipping the unavailable ones) and report."""
    report = Report(runs=[], check=check)
    with sigterm_raises():
        for name in names:
            mode = modes.get(name)
            if not mode.available():
                report.skipped[name] = mode.unavailable_reason()
                continue
            with _containment.contain() as box, orphan_collector() as collector:
                collector.keep.add(box.guard_pid)
                result = run_mode(name, opts, collector, box)
            if result.target_log:
                _text.write("stderr", result.target_log)
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
    with (
        sigterm_raises(),
        _containment.contain() as box,
        orphan_collector(opts.subreaper) as collector,
    ):
        collector.keep.add(box.guard_pid)
        output = CommandOutput(os.path.basename(argv[0]), opts.cmd_output)
        # Listening before CMD starts, the watcher sees everything CMD's tree
        # did before it was made: a child that orphans one and exits at once.
        connector = listen_early(opts.observe)
        try:
            target = Target(argv, output=output)
        except BaseException:
            if connector is not None:
                connector.close()
            raise
        log(f"started {argv[0]} as pid {target.pid}")
        output.pass_on()  # its lines after the line that says which pid is which
        name = opts.name or program_name(argv)
        result = measure_command(
            shell_join(argv), target, opts, collector, box, flood_to, load_command, wait_port,
            title=f"{name}, pid {target.pid}", connector=connector,
        )  # fmt: skip
    result.name = name
    return Report(runs=[result])


def measure_command(
    name: str,
    target: Target,
    opts: RunOptions,
    collector: OrphanCollector,
    box: _containment.Box,
    flood_to: tuple[str, int] | None = None,
    load_command: str | None = None,
    wait_port: tuple[str, int] | None = None,
    title: str = "",
    connector: _cnproc.Connector | None = None,
) -> RunResult:
    """Measure a started ``run`` target under ``--flood``, ``--load`` or neither;
    ``title`` heads the ``--live`` screen; ``connector`` as ``measure`` takes it."""

    listening: list[str] = []  # the address the program listens on, once it does

    def ready() -> None:
        if wait_port is not None:
            host, port = wait_port
            listening.append(
                wait_for_port(target, host, port, opts.ready_timeout, collector.orphans)
            )

    def start_load() -> Load | None:
        if flood_to is not None:
            # The name was resolved once: flood the address the program
            # was found listening on, when it is the same host and port.
            host = listening[0] if listening and wait_port == flood_to else flood_to[0]
            return flood_load(host, flood_to[1], opts, collector)
        if load_command is not None:
            return CommandLoad(load_command, collector)
        return None

    result = measure(
        name, target, opts, collector, box, start_load, ready, title=title, connector=connector
    )
    result.kind = "run"
    return result


def watch(pid: int, opts: RunOptions) -> Report:
    """Watch a running process and its tree; start and stop nothing.

    Ctrl-C (or ``--duration``) ends the watch; the settle window follows
    and the report is printed: an interrupted watch is a finished watch.
    A process that exits ends it too, even when its parent leaves it a
    zombie; one that is a zombie already is ``ZombieTargetError``.
    """
    stat = _procfs.read_stat(pid)
    if stat is not None and stat.group_exited:  # a Zl leader is alive
        raise ZombieTargetError(
            f"process {pid} ({stat.comm}) is a zombie already: {_held_by(stat)}"
        )
    adopters = [1] if pid != 1 else []  # orphans of the tree go to init
    monitor = open_monitor(pid, adopters, opts.interval, opts.observe, log=log)
    monitor.settle = opts.settle
    collector = OrphanCollector(subreaper=False)  # starts nothing, adopts nothing
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    # Read now: the watch may end with the process. The pid changes from
    # one watch to the next, the program does not: JUnit's testcase is
    # named after the program.
    comm = stat.comm if stat is not None else "?"
    cmdline = monitor.root_cmdline
    name = opts.name or (program_name(cmdline) if cmdline else comm)
    title = f"pid {pid} ({comm})"

    def over() -> bool:
        gone = _proctl.session_of(pid) is None
        if not gone:
            now = _procfs.read_stat(pid)
            if now is not None and now.state == "Z":
                log(f"process {pid} exited and is a zombie: {_held_by(now)}")
                gone = True
        return gone or (deadline is not None and time.monotonic() >= deadline)

    monitor.start()
    listen_before = _procfs.listen_queue_counters()
    with sigterm_raises():
        try:
            obs = observe(monitor, collector, opts, over, interrupt_ends_load=True, title=title)
        finally:
            with contextlib.suppress(Exception):
                monitor.stop()
            monitor.close()
    result = _result(f"pid {pid}", monitor, obs, opts, {}, 0, listen_before)
    result.kind = "watch"
    result.name = name
    return Report(runs=[result])


def _held_by(stat: _procfs.ProcStat) -> str:
    """Who holds zombie ``stat``: its parent, which has not collected it."""
    holder = _procfs.read_stat(stat.ppid)
    name = f" ({holder.comm})" if holder is not None else ""
    return f"its parent {stat.ppid}{name} has not collected it"
