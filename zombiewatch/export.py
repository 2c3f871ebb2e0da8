"""``zombiewatch export``: the machine's zombies as Prometheus metrics, served
over HTTP or written for node_exporter's textfile collector.

Owns the metrics (names, labels, the top-N grouping that bounds their
cardinality), the collector that scans at each scrape, and the two ways
out: an HTTP ``/metrics`` endpoint and a ``.prom`` file replaced
atomically every ``--every`` seconds. The scan itself is ``scan``'s (one
cheap pass over ``/proc``, psutil only for the parents that hold zombies);
lifetimes from kernel events are ``lifetimes``'s. Needs the optional
``prometheus_client`` (the ``prometheus`` extra); ``cli``
imports this module only for the ``export`` command.

A scrape that finds no process, or whose scan raises, is not a crash: the
zombie metrics are left out of that scrape (a stale count would be a
lie), ``zombiewatch_scan_success`` says 0, ``zombiewatch_scan_errors_total``
counts it and one log line says why (again only when the reason changes).
SIGTERM and SIGINT stop the exporter cleanly; the main thread waits for
them with ``sigwait`` (``sigtimedwait`` between two writes of the
textfile), so no handler runs at all (docs/DESIGN.md, Exporter).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from zombiewatch import __version__, _defaults, lifetimes
from zombiewatch import scan as scanner
from zombiewatch._text import log as _log
from zombiewatch.errors import ZombiewatchError
from zombiewatch.scan_report import ScanResult, ZombieParent

TEXTFILE_NAME = "zombiewatch.prom"
OTHER = "other"  # the label values of the row that sums every parent past the top N
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# -- the metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One row of ``zombiewatch_zombies``: the parents sharing a name and user
    (and a pid, with ``--pid-label``)."""

    parent: str
    user: str
    pid: str  # "" unless by pid
    zombies: int
    oldest_age: float  # seconds, an upper bound


def group_parents(parents: Sequence[ZombieParent], top: int, by_pid: bool = False) -> list[Group]:
    """Sum ``parents`` by command name and user (and pid, with ``by_pid``);
    keep the ``top`` groups with most zombies and sum the rest into one
    ``other`` row, which is always there (0 on a clean host), so that
    ``sum(zombiewatch_zombies)`` is never an empty result."""
    merged: dict[tuple[str, str, str], list[float]] = {}
    for parent in parents:
        key = (parent.name, parent.user, str(parent.pid) if by_pid else "")
        row = merged.setdefault(key, [0, 0.0])
        row[0] += parent.count
        row[1] = max(row[1], parent.oldest_age_max)
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0]))
    groups = [Group(k[0], k[1], k[2], int(v[0]), v[1]) for k, v in ranked[:top]]
    rest = [v for _k, v in ranked[top:]]
    groups.append(
        Group(
            OTHER,
            OTHER,
            "",
            int(sum(v[0] for v in rest)),
            max((v[1] for v in rest), default=0.0),
        )
    )
    return groups


@dataclass
class ScanState:
    """What the exporter knows when a scrape is answered."""

    method: str  # "events" or "scan": how created/collected/lifetimes are known
    top: int = _defaults.EXPORT_TOP
    by_pid: bool = False
    result: ScanResult | None = None  # the last scan, None if it failed
    scans: int = 0
    errors: int = 0
    counts: lifetimes.Counts | None = None  # from events, None without them


def families(state: ScanState) -> list[Metric]:
    """Build every metric family of one scrape from ``state``."""
    out: list[Metric] = []
    info = InfoMetricFamily(
        "zombiewatch",
        "zombiewatch's version and how it observes: events (exits and reaps from the kernel)"
        " or scan (zombies counted at each scrape only).",
    )
    info.add_metric([], {"version": __version__, "method": state.method})
    out.append(info)
    result = state.result
    out.append(
        GaugeMetricFamily(
            "zombiewatch_scan_success",
            "1 if the last scan of /proc worked, 0 if it failed (the zombie metrics are then"
            " left out).",
            value=0 if result is None else 1,
        )
    )
    out.append(CounterMetricFamily("zombiewatch_scans", "Scans of /proc run.", value=state.scans))
    out.append(
        CounterMetricFamily(
            "zombiewatch_scan_errors", "Scans of /proc that failed.", value=state.errors
        )
    )
    if result is not None:
        out += _scan_families(result, state.top, state.by_pid)
    if state.counts is not None:
        out += _event_families(state.counts)
    return out


def _scan_families(result: ScanResult, top: int, by_pid: bool) -> list[Metric]:
    labels = ["parent", "user", "pid"] if by_pid else ["parent", "user"]
    zombies = GaugeMetricFamily(
        "zombiewatch_zombies",
        f"Zombie processes now, by the command name and user of the process holding them:"
        f' the {top} groups with most, the rest summed under parent="{OTHER}".',
        labels=labels,
    )
    oldest = GaugeMetricFamily(
        "zombiewatch_oldest_zombie_age_seconds",
        "Upper bound on how long the oldest zombie of each group has been one: the time since"
        " that process started (the kernel records no time of death).",
        labels=labels,
    )
    for group in group_parents(result.parents, top, by_pid):
        values = [group.parent, group.user, group.pid][: len(labels)]
        zombies.add_metric(values, group.zombies)
        oldest.add_metric(values, round(group.oldest_age, 3))
    return [
        zombies,
        oldest,
        GaugeMetricFamily(
            "zombiewatch_zombie_parents",
            "Processes holding at least one zombie now.",
            value=len(result.parents),
        ),
        GaugeMetricFamily(
            "zombiewatch_scan_duration_seconds",
            "Seconds the last scan of /proc took.",
            value=result.scan_time,
        ),
        GaugeMetricFamily(
            "zombiewatch_scanned_processes",
            "Processes the last scan read.",
            value=result.processes,
        ),
    ]


def _event_families(counts: lifetimes.Counts) -> list[Metric]:
    buckets = []
    total = 0
    for bound, count in zip(
        [*(repr(b) for b in lifetimes.BUCKETS), "+Inf"], counts.buckets, strict=True
    ):
        total += count
        buckets.append((bound, total))
    lifetime = HistogramMetricFamily(
        "zombiewatch_zombie_lifetime_seconds",
        "Seconds from a process's exit to its collection by its parent, from kernel events"
        " (upper bounds for those collected before the exporter could watch them).",
        buckets=buckets,
        sum_value=counts.lifetime_sum,
    )
    return [
        CounterMetricFamily(
            "zombiewatch_zombies_created",
            "Processes that exited, each a zombie until its parent collects it (kernel events).",
            value=counts.created,
        ),
        CounterMetricFamily(
            "zombiewatch_zombies_collected",
            "Zombies collected by their parents (kernel events and pidfds).",
            value=counts.collected,
        ),
        CounterMetricFamily(
            "zombiewatch_zombies_collected_unwatched",
            "Collected zombies whose lifetime is an upper bound: collected before the exporter"
            " could watch them.",
            value=counts.unwatched,
        ),
        CounterMetricFamily(
            "zombiewatch_events_lost",
            "Times the kernel dropped process events (a full socket buffer): exits not counted.",
            value=counts.lost,
        ),
        lifetime,
    ]


class ZombieCollector:
    """Scan at each scrape and yield the metric families (a prometheus_client
    collector). Scrapes arriving together are answered one after the other."""

    def __init__(
        self,
        state: ScanState,
        watcher: lifetimes.ExitWatcher | None = None,
        scan: Callable[[], ScanResult] = scanner.scan,
        log: Callable[[str], None] = _log,
    ) -> None:
        self.state = state
        self._watcher = watcher
        self._scan = scan
        self._log = log
        self._lock = threading.Lock()
        self._last_error: str | None = None

    def refresh(self) -> None:
        """Scan now; a failure is recorded and logged, never raised."""
        state = self.state
        state.scans += 1
        try:
            result = self._scan()
            if result.processes == 0:
                # /proc always lists this process: none means no procfs, or a
                # broken one. "No zombies" would be a lie.
                raise OSError("/proc lists no process (is procfs mounted?)")
        except Exception as err:  # the boundary: any failure is a metric, never a crash
            state.result = None
            state.errors += 1
            why = f"{type(err).__name__}: {err}"
            if why != self._last_error:
                self._log(f"scan failed: {why} (zombiewatch_scan_success is 0)")
                self._last_error = why
        else:
            state.result = result
            if self._last_error is not None:
                self._log("scan works again")
                self._last_error = None
            if self._watcher is not None:
                self._watcher.reconcile(z.pid for p in result.parents for z in p.zombies)
        if self._watcher is not None:
            state.counts = self._watcher.counts()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self.refresh()
            metrics = families(self.state)
        yield from metrics


# -- options and the two ways out ---------------------------------------------------


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9577`` for IPv6; ``:PORT`` for loopback);
    raise ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, as [::1]:9577")
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """True if every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


@dataclass
class Options:
    """What ``zombiewatch export`` was asked to do."""

    listen: tuple[str, int] = ("127.0.0.1", 9577)  # _defaults.EXPORT_LISTEN, parsed
    textfile: str | None = None  # a directory: write there instead of serving
    every: float = _defaults.EXPORT_EVERY
    top: int = _defaults.EXPORT_TOP
    by_pid: bool = False
    observe: str = "auto"


def open_collector(
    options: Options, log: Callable[[str], None] = _log
) -> tuple[ZombieCollector, lifetimes.ExitWatcher | None]:
    """Start the event watcher as ``options.observe`` says and return the
    collector and the watcher (None without events).

    ``events`` where events cannot be had raises ``ZombiewatchError`` (exit
    3); ``auto`` then counts zombies by scans alone and says so once.
    """
    watcher: lifetimes.ExitWatcher | None = None
    if options.observe != "scan":
        watcher, why = lifetimes.open_watcher()
        if watcher is None:
            if options.observe == "events":
                raise ZombiewatchError(f"--observe events: {why}")
            log(
                f"kernel events unavailable ({why}): zombies are counted at each scrape;"
                " no created/collected counters or lifetimes"
            )
    state = ScanState(
        method="events" if watcher is not None else "scan",
        top=options.top,
        by_pid=options.by_pid,
    )
    return ZombieCollector(state, watcher, log=log), watcher


def registry_for(collector: ZombieCollector, own_process: bool = True) -> CollectorRegistry:
    """A registry with the zombie collector and, with ``own_process``, the
    exporter's own process metrics (``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``...).

    A textfile leaves them out: node_exporter exports its own under those
    names, and logs an error at every scrape for a clashing copy
    (docs/FACTS.md, Prometheus).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if own_process:
        ProcessCollector(registry=registry)
    return registry


def write_textfile(registry: CollectorRegistry, directory: str) -> str:
    """Write the metrics to ``DIRECTORY/zombiewatch.prom`` atomically; return its path.

    Written to a hidden temporary file in the same directory, then renamed
    over the old one: node_exporter reads either the old file or the new,
    never half of one, and skips names that do not end in ``.prom``.
    """
    path = os.path.join(directory, TEXTFILE_NAME)
    tmp = os.path.join(directory, f".{TEXTFILE_NAME}.{os.getpid()}.tmp")
    data = generate_latest(registry)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _wait_for_stop(timeout: float) -> int | None:
    """Wait up to ``timeout`` s for SIGTERM or SIGINT, which the caller
    blocked; return the signal, or None when the time passed."""
    info = signal.sigtimedwait(STOP_SIGNALS, timeout)
    return None if info is None else info.si_signo


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    # Blocked before any thread starts, so every thread inherits the mask
    # and only the main thread's sigwait takes them: no handler runs.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run(
    options: Options,
    ready: Callable[[dict[str, object]], None],
    log: Callable[[str], None] = _log,
) -> None:
    """Export until SIGTERM or SIGINT: serve ``/metrics`` on ``options.listen``
    or, with ``options.textfile``, rewrite the file every ``options.every``
    seconds. ``ready`` gets one dict once the exporter is up.

    Raises ``ZombiewatchError`` if it cannot listen or events were demanded
    and cannot be had.
    """
    with _stop_signals_blocked():
        collector, watcher = open_collector(options, log)
        method = collector.state.method

        def announce(fields: dict[str, object]) -> None:
            ready({**fields, "pid": os.getpid(), "method": method})

        try:
            registry = registry_for(collector, own_process=options.textfile is None)
            if options.textfile is not None:
                _write_every(registry, options.textfile, options.every, announce, log)
            else:
                _serve(registry, options.listen, announce, log)
        finally:
            if watcher is not None:
                watcher.close()


def _serve(
    registry: CollectorRegistry,
    listen: tuple[str, int],
    announce: Callable[[dict[str, object]], None],
    log: Callable[[str], None],
) -> None:
    host, port = listen
    try:
        httpd, thread = start_http_server(port, host, registry)
    except (OSError, UnicodeError) as err:
        why = getattr(err, "strerror", None) or str(err)
        raise ZombiewatchError(f"cannot listen on {host}:{port}: {why}") from err
    try:
        bound = httpd.server_address[1]
        if not is_loopback(host):
            shown = f"[{host}]" if ":" in host else host  # [::]:9577, not :::9577
            log(
                f"listening on {shown}:{bound}: anyone who can reach it reads this host's"
                " zombie holders and their users"
            )
        announce({"event": "listening", "host": host, "port": bound})
        signum = signal.sigwait(STOP_SIGNALS)
        log(f"stopping on {signal.Signals(signum).name}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _write_every(
    registry: CollectorRegistry,
    directory: str,
    every: float,
    announce: Callable[[dict[str, object]], None],
    log: Callable[[str], None],
) -> None:
    path = os.path.join(directory, TEXTFILE_NAME)
    announced = False
    try:
        while True:
            started = time.monotonic()
            try:
                write_textfile(registry, directory)
            except OSError as err:
                log(f"cannot write {path}: {err.strerror}; trying again in {every:g} s")
            if not announced:
                announce({"event": "writing", "path": path, "every": every})
                announced = True
            # The interval runs from the start of one write to the next.
            signum = _wait_for_stop(max(0.0, every - (time.monotonic() - started)))
            if signum is not None:
                log(f"stopping on {signal.Signals(signum).name}")
                break
    finally:
        # A stopped exporter must not go on claiming the last counts: with
        # the file gone, node_exporter stops exporting them.
        with contextlib.suppress(OSError):
            os.unlink(path)
