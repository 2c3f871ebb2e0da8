"""zombiewatch's own costs, side by side with their baselines (#8).

    python benchmarks/bench.py            # full run, about 6 minutes on 2 cores
    python benchmarks/bench.py --quick    # about 2 minutes

Prints one table and writes it, with the machine facts, between the markers
of ``docs/BENCHMARKS.md`` (the text around them is kept). Five parts:

1. server: connections per second of each reaping mode against the C
   fork server, ``socketserver.ForkingTCPServer`` (backlog 1024 and as
   shipped with 5) and ``ThreadingTCPServer``, all driven by the C epoll
   flooder with 50 concurrent clients;
2. flooder: zombiewatch's flooder against the C flooder, both against the
   C server (and against the ``sigchld`` server: never the bottleneck);
3. monitor: time per sample with 10 to 5,000 children (half zombies) on a
   host with few and with 10,000 unrelated processes, against a plain
   ``psutil`` loop; and a cross-check against full ``/proc`` scans while a
   parent forks and collects children all the time;
4. reap latency: zombie lifetimes in ``sigchld``, ``pidfd`` and
   ``reaper-thread`` under the runner, beside the sampling interval and the
   C server watched the same way;
5. overhead of watching: a server's rate with and without ``zombiewatch
   watch`` sampling it.

Every figure is a ratio to a baseline measured in the same run, the two
interleaved (A B A B ...), the median of at least three rounds, because the
machine is shared and noisy. The C sources under ``benchmarks/c`` are built
with ``cc -O2`` into a temporary directory; without a compiler the C
columns are skipped (``--no-cc`` forces that). Everything is bounded in
count and time and stays on loopback. Every process started here runs in
its own session and is stopped with its group at the end; this process is
a child subreaper, so orphans come here and are collected.

Not part of the test suite: a timing is a measurement, not an assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import functools
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from zombiewatch import _platform, modes
from zombiewatch.monitor import Monitor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN = "<!-- bench.py: begin generated -->"
END = "<!-- bench.py: end generated -->"
PY = sys.executable
HOST = "127.0.0.1"
CONCURRENCY = 50
UNTIL_DEADLINE = 10_000_000  # connections: flood until the deadline
CLK_TCK = os.sysconf("SC_CLK_TCK")
X = "\u00d7"  # the multiplication sign, escaped: linters take the glyph for an x
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class BenchError(Exception):
    """A measurement could not be taken."""


@dataclass(frozen=True)
class Plan:
    """How much each part measures: the full run or --quick."""

    rounds: int
    server_seconds: float
    server_modes: tuple[str, ...]
    flood_connections: int
    flood_connections_py_server: int
    monitor_sizes: tuple[int, ...]
    monitor_budget: float  # seconds per timing of one method at one size
    unrelated: int
    churn_seconds: float
    reap_connections: int
    overhead_rounds: int
    overhead_seconds: float
    overhead_on_c: bool


FULL = Plan(
    rounds=5,
    server_seconds=2.0,
    server_modes=tuple(modes.names()),
    flood_connections=6000,
    flood_connections_py_server=2000,
    monitor_sizes=(10, 100, 1000, 5000),
    monitor_budget=0.4,
    unrelated=10_000,
    churn_seconds=8.0,
    reap_connections=2000,
    overhead_rounds=7,
    overhead_seconds=2.0,
    overhead_on_c=True,
)
QUICK = Plan(
    rounds=3,
    server_seconds=0.8,
    server_modes=("sigchld", "pidfd", "reaper-thread"),
    flood_connections=2500,
    flood_connections_py_server=800,
    monitor_sizes=(10, 100, 1000),
    monitor_budget=0.12,
    unrelated=10_000,
    churn_seconds=3.0,
    reap_connections=600,
    overhead_rounds=3,
    overhead_seconds=1.0,
    overhead_on_c=False,
)


# -- the table -----------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a figure, its same-run baseline, their ratio."""

    part: str
    what: str
    figure: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: str = ""


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what}: {row.figure}" + (f" ({fmt_ratio(row.ratio)})" if row.ratio else ""))

    def markdown(self) -> str:
        head = "| # | measurement | figure | baseline (same run) | ratio | target | met | notes |"
        lines = [head, "| --- | --- | ---: | --- | ---: | --- | --- | --- |"]
        for row in self.rows:
            met = {True: "yes", False: "**no**", None: ""}[row.met]
            lines.append(
                f"| {row.part} | {row.what} | {row.figure} | {row.baseline} |"
                f" {fmt_ratio(row.ratio)} | {row.target} | {met} | {row.notes} |"
            )
        return "\n".join(lines)


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if ratio < 1:
        return f"{ratio:.3f}{X}"  # near a target such as 0.95, two decimals would round up
    return f"{ratio:.2f}{X}" if ratio < 10 else f"{ratio:.0f}{X}"


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f} conn/s"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:,.0f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_of(figures: list[float], baselines: list[float]) -> float:
    """Median of the per-round ratios (each pair measured side by side)."""
    return median([f / b for f, b in zip(figures, baselines, strict=True) if b > 0])


# -- processes ------------------------------------------------------------------


def _prctl(option: int, arg: int) -> int:
    return int(ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0))


def _die_with_us() -> None:
    # Runs in the child before exec: if this benchmark is SIGKILLed, the
    # kernel sends its servers SIGTERM, and their groups end with them.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Procs:
    """Every process this benchmark starts: own session, stopped with its group."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.live: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        err = tempfile.TemporaryFile(dir=self.workdir)  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_us,
            cwd=self.workdir,
            env=env,
        )
        self.live[proc.pid] = (proc, err)
        return proc

    @staticmethod
    def name(proc: subprocess.Popen[bytes]) -> str:
        args = proc.args
        return str(args[0] if isinstance(args, list) else args)

    def stderr_tail(self, proc: subprocess.Popen[bytes]) -> str:
        _proc, err = self.live[proc.pid]
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {proc.poll()}"

    def ready(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, Any]:
        """Read the process's JSON ready line, or fail after ``timeout``."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise BenchError(f"{self.name(proc)}: no ready line in {timeout:g} s")
                chunk = os.read(fd, 4096)
                if not chunk:
                    proc.wait()
                    raise BenchError(f"{self.name(proc)} ended: {self.stderr_tail(proc)}")
                buf += chunk
        return dict(json.loads(buf.split(b"\n", 1)[0]))

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Stop ``proc`` and its whole process group; collect the orphans."""
        if proc.pid not in self.live:
            return
        pgid = proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            proc.wait(3.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
        # The leader is collected, but its group id stays taken while any
        # member lives, so this reaches only stragglers of the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _proc, err = self.live.pop(proc.pid)
        err.close()
        if proc.stdout is not None:
            proc.stdout.close()
        collect_orphans(set(self.live))

    def stop_all(self) -> None:
        for proc, _err in list(self.live.values()):
            self.stop(proc)
        # Orphans (workers of a stopped server) come to us: wait a moment
        # for the killed ones to turn into zombies, then collect them.
        deadline = time.monotonic() + 5.0
        while collect_orphans(set()) and time.monotonic() < deadline:
            time.sleep(0.05)


def collect_orphans(keep: set[int]) -> int:
    """Collect our children that no Popen owns (orphans adopted as subreaper).

    By pid, never ``waitpid(-1)``: that could take the status of a process
    a Popen still waits for. Returns how many children are left besides
    ``keep``.
    """
    left = 0
    for pid in _platform.read_children(os.getpid()):
        if pid in keep:
            continue
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # a subprocess.run() collected it meanwhile
        if done == 0:
            left += 1
    return left


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own, collected children's) CPU time of ``pid`` in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def fault_counts(pid: int) -> tuple[int, int]:
    """(own, collected children's) minor page faults of ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[7]), int(fields[8])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- tools: the C programs, the flooders ------------------------------------------


@dataclass
class Tools:
    workdir: Path
    fork_server: str | None = None
    epoll_flood: str | None = None
    proc_farm: str | None = None
    cc_version: str = "none"

    @property
    def has_c(self) -> bool:
        return self.fork_server is not None


def build_c(tools: Tools, no_cc: bool) -> None:
    cc = None if no_cc else shutil.which("cc")
    if cc is None:
        return
    try:
        for name in ("fork_server", "epoll_flood", "proc_farm"):
            out = tools.workdir / name
            subprocess.run(
                [cc, "-O2", "-o", str(out), str(HERE / "c" / f"{name}.c")],
                check=True,
                capture_output=True,
                timeout=120,
            )
            setattr(tools, name, str(out))
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        tools.cc_version = version.stdout.splitlines()[0] if version.stdout else cc
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        detail = getattr(err, "stderr", b"") or b""
        print(f"cc failed, C columns skipped: {err} {detail.decode(errors='replace')}")
        tools.fork_server = tools.epoll_flood = tools.proc_farm = None


@dataclass
class Flood:
    rate: float
    ok: int
    failed: int  # answered wrong, reset, timed out
    cut: int  # still open at the deadline: neither right nor wrong
    p99_ms: float


def flood(tools: Tools, port: int, connections: int, deadline: float, flooder: str = "c") -> Flood:
    """Drive ``connections`` (at most ``deadline`` seconds) at the server on ``port``.

    ``connections=UNTIL_DEADLINE`` floods for ``deadline`` seconds: both
    flooders stop at their deadline, zombiewatch's given a count of
    connections no Python server answers in less.
    """
    if flooder == "c" and tools.epoll_flood is None:
        flooder = "zombiewatch"
    if connections == UNTIL_DEADLINE and flooder != "c":
        connections = max(200, int(deadline * 2500))
    if flooder == "c":
        assert tools.epoll_flood is not None
        argv = [tools.epoll_flood, HOST, str(port), str(connections), str(CONCURRENCY)]
        argv += [f"{deadline:g}", "10"]
    else:
        argv = [PY, "-m", "zombiewatch", "flood", "--port", str(port)]
        argv += ["--connections", str(connections), "--concurrency", str(CONCURRENCY)]
        argv += ["--deadline", f"{deadline:g}", "--timeout", "10", "--json"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=deadline + 60, cwd=tools.workdir
        )
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{flooder} flooder: still running {deadline + 60:g} s later") from err
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as err:
        raise BenchError(f"{flooder} flooder: no result ({proc.stderr.strip()[-300:]})") from err
    # Connections still open at the deadline are neither right nor wrong. The C
    # flooder counts them apart; zombiewatch's counts them, and those it never
    # started, as "flood deadline" failures, so there they are left out.
    failed = data["failed"] - data.get("failures", {}).get("flood deadline", 0)
    p99 = data["latency_ms"].get("p99") or 0.0
    return Flood(data["conn_per_s"], data["ok"], failed, data.get("cut", 0), p99)


# -- part 1: servers -------------------------------------------------------------


@dataclass
class ServerVariant:
    name: str
    argv: list[str]
    key: str


def server_variants(tools: Tools, plan: Plan) -> list[ServerVariant]:
    variants = []
    if tools.fork_server:
        variants.append(
            ServerVariant("C fork server (SIGCHLD waitpid loop)", [tools.fork_server], "c")
        )
    for mode in plan.server_modes:
        if not modes.get(mode).available():
            continue
        config = json.dumps({"mode": mode, "child_delay": 0})
        variants.append(
            ServerVariant(f"zombiewatch `{mode}`", [PY, "-m", "zombiewatch.server", config], mode)
        )
    baseline = [PY, str(HERE / "baseline_servers.py")]
    variants += [
        ServerVariant("ForkingTCPServer, backlog 1024", [*baseline, "forking", "1024"], "fts1024"),
        ServerVariant(
            "ForkingTCPServer as shipped (backlog 5)", [*baseline, "forking", "5"], "fts5"
        ),
        ServerVariant("ThreadingTCPServer, backlog 1024", [*baseline, "threading", "1024"], "tts"),
    ]
    return variants


@dataclass
class ServerRun:
    rate: float
    failed: int
    cut: int
    p99_ms: float
    parent_us: float
    children_us: float
    parent_faults: float
    children_faults: float
    rss_kb: int


def measure_server(procs: Procs, tools: Tools, variant: ServerVariant, seconds: float) -> ServerRun:
    proc = procs.start(variant.argv)
    try:
        info = procs.ready(proc)
        port, pid = int(info["port"]), int(info.get("pid", proc.pid))
        rss = rss_kb(pid)
        flood(tools, port, 100, 1.5)  # warm-up: first connections, page cache
        own0, kids0 = cpu_ticks(pid)
        faults0 = fault_counts(pid)
        result = flood(tools, port, UNTIL_DEADLINE, seconds)
        own1, kids1 = cpu_ticks(pid)
        faults1 = fault_counts(pid)
    finally:
        procs.stop(proc)
    done = max(result.ok + result.failed, 1)
    per = 1e6 / CLK_TCK / done
    return ServerRun(
        result.rate,
        result.failed,
        result.cut,
        result.p99_ms,
        (own1 - own0) * per,
        (kids1 - kids0) * per,
        (faults1[0] - faults0[0]) / done,
        (faults1[1] - faults0[1]) / done,
        rss,
    )


def rotate(items: list[Any], by: int) -> list[Any]:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def part_server(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("1. server", flush=True)
    variants = server_variants(tools, plan)
    runs: dict[str, list[ServerRun]] = {v.key: [] for v in variants}
    for rnd in range(plan.rounds):
        # A B C ... then B C ... A: every variant meets the others' noise.
        for variant in rotate(variants, rnd):
            runs[variant.key].append(measure_server(procs, tools, variant, plan.server_seconds))
        print(f"  round {rnd + 1}: " + ", ".join(f"{k} {r[-1].rate:.0f}" for k, r in runs.items()))
    base_key = "c" if tools.has_c else "fts1024"
    base_name = "C fork server" if tools.has_c else "ForkingTCPServer(1024)"
    base_rates = [r.rate for r in runs[base_key]]
    fts_rates = [r.rate for r in runs["fts1024"]]
    for variant in variants:
        rs = runs[variant.key]
        rates = [r.rate for r in rs]
        notes = (
            f"p99 {median([r.p99_ms for r in rs]):,.0f} ms; per conn: parent"
            f" {median([r.parent_us for r in rs]):,.0f} µs CPU,"
            f" {median([r.parent_faults for r in rs]):,.0f} page faults"
        )
        if variant.key not in ("thread", "tts", "none", "ignore", "double-fork", "sigchld-once"):
            notes += (
                f"; children {median([r.children_us for r in rs]):,.0f} µs,"
                f" {median([r.children_faults for r in rs]):,.0f} faults"
            )
        notes += f"; parent RSS {median([r.rss_kb for r in rs]) / 1024:.1f} MB"
        failed = median([r.failed for r in rs])
        if failed:
            cut = median([r.cut for r in rs])
            notes += f"; {failed:,.0f} failed, {cut:,.0f} still open at the deadline"
            if variant.key == "fts5":
                notes += " (listen-queue overflow: reset after 1-2 s)"
        fig = fmt_rate(median(rates))
        if variant.key == base_key:
            table.add(Row("1", variant.name, fig, "(the baseline)", notes=notes))
            continue
        row = Row(
            "1",
            variant.name,
            fig,
            f"{base_name} {fmt_rate(median(base_rates))}",
            ratio_of(rates, base_rates),
            notes=notes,
        )
        if variant.key == "sigchld":
            if tools.has_c:
                row.target, row.met = f"≥ 0.25{X}", (row.ratio or 0.0) >= 0.25
            else:  # the baseline is ForkingTCPServer(1024) already
                row.target, row.met = f"≥ 2{X}", (row.ratio or 0.0) >= 2.0
        table.add(row)
        if variant.key == "sigchld" and tools.has_c:
            r2 = ratio_of(rates, fts_rates)
            table.add(
                Row(
                    "1",
                    "zombiewatch `sigchld` vs ForkingTCPServer(1024)",
                    fig,
                    f"ForkingTCPServer(1024) {fmt_rate(median(fts_rates))}",
                    r2,
                    f"≥ 2{X}",
                    r2 >= 2.0,
                )
            )
    table.notes.append(
        f"1: {CONCURRENCY} concurrent clients, one line each, {plan.server_seconds:g} s per"
        f" measurement after 100 warm-up connections, each server started afresh;"
        f" {'the C epoll flooder' if tools.has_c else 'zombiewatch flood (no C compiler)'}"
        " drives all. zombiewatch modes run with `child_delay` 0 (the server's default)."
        " CPU time and minor page faults per connection are the server's own and those"
        " of the children it collected (children's left out where not all are"
        " collected: `none`, `sigchld-once`, `ignore`, `double-fork`; `thread` has"
        " none); CPU time is in 10 ms ticks, so read it as ±5%."
    )


# -- part 2: flooders --------------------------------------------------------------


def part_flooder(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("2. flooder", flush=True)
    if not tools.has_c:
        table.notes.append("2: skipped: no C compiler, so no C flooder or C server to compare with")
        return
    assert tools.fork_server is not None
    flooders = ["c", "zombiewatch"]
    targets = [("C fork server", [tools.fork_server], plan.flood_connections)]
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    targets.append(
        (
            "zombiewatch `sigchld`",
            [PY, "-m", "zombiewatch.server", config],
            plan.flood_connections_py_server,
        )
    )
    for target_name, argv, connections in targets:
        rates: dict[str, list[float]] = {f: [] for f in flooders}
        proc = procs.start(argv)
        try:
            port = int(procs.ready(proc)["port"])
            flood(tools, port, 200, 2.0)
            for rnd in range(plan.rounds):
                for name in rotate(flooders, rnd):
                    rates[name].append(flood(tools, port, connections, 60.0, name).rate)
        finally:
            procs.stop(proc)
        base = rates["c"]
        table.add(
            Row(
                "2",
                f"C epoll flooder → {target_name}",
                fmt_rate(median(base)),
                "(the baseline)",
                notes=f"{connections:,} connections per measurement",
            )
        )
        for name in flooders[1:]:
            ratio = ratio_of(rates[name], base)
            row = Row(
                "2",
                f"zombiewatch flood → {target_name}",
                fmt_rate(median(rates[name])),
                f"C epoll flooder {fmt_rate(median(base))}",
                ratio,
            )
            if target_name == "C fork server":
                row.target, row.met = f"≥ 0.9{X}", ratio >= 0.9
            else:
                row.target, row.met = f"not the bottleneck (≥ 0.9{X})", ratio >= 0.9
            table.add(row)


# -- part 3: monitor -----------------------------------------------------------------


# Fallback fixtures for a machine without cc: the same behaviour as proc_farm.c.
FARM_PY = r"""
import os, random, signal, sys, time
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
def collect_all():
    os.killpg(0, signal.SIGTERM)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            pass
def child(seconds):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(seconds)
    os._exit(0)
mode = sys.argv[1]
if mode == "tree":
    live, zombies, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    for i in range(live + zombies):
        if os.fork() == 0:
            if i < zombies:
                os._exit(0)
            child(seconds + 5)
    me = os.getpid()
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        with open(f"/proc/{me}/task/{me}/children") as f:
            kids = f.read().split()
        z = 0
        for k in kids:
            try:
                with open(f"/proc/{k}/stat", "rb") as f:
                    z += f.read().rsplit(b")", 1)[1][1:2] == b"Z"
            except OSError:
                pass
        if z >= zombies:
            break
        time.sleep(0.005)
    print('{"event": "ready", "pid": %d}' % me, flush=True)
    end = time.monotonic() + seconds
    while not stop and time.monotonic() < end:
        time.sleep(0.05)
else:
    seconds = float(sys.argv[2])
    print('{"event": "ready", "pid": %d}' % os.getpid(), flush=True)
    end = time.monotonic() + seconds
    next_reap = time.monotonic() + 0.02
    while not stop and time.monotonic() < end:
        life = random.random() * 0.01
        if os.fork() == 0:
            child(life)
        time.sleep(0.0005)
        if time.monotonic() >= next_reap:
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
            next_reap = time.monotonic() + 0.02
collect_all()
"""


def start_farm(procs: Procs, tools: Tools, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    argv = [tools.proc_farm, *args] if tools.proc_farm else [PY, "-I", "-S", "-c", FARM_PY, *args]
    proc = procs.start(argv)
    return proc, int(procs.ready(proc, timeout=120)["pid"])


def host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def process_room() -> tuple[int, str]:
    """How many more processes this machine can take, and what limits it."""
    limits = {}
    with open("/proc/sys/kernel/pid_max") as f:
        limits["pid_max"] = int(f.read())
    with open("/proc/sys/kernel/threads-max") as f:
        limits["threads-max"] = int(f.read())
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY:
        limits["RLIMIT_NPROC"] = soft
    with contextlib.suppress(OSError, ValueError), open("/sys/fs/cgroup/pids.max") as f:
        limits["cgroup pids.max"] = int(f.read())
    now = host_processes()
    # Threads count against every limit; leave a quarter of the room free.
    room = min(limits.values()) * 3 // 4 - now - 200
    return room, ", ".join(f"{k} {v:,}" for k, v in limits.items()) + f"; {now} processes now"


def time_per_call(fn: Callable[[], object], budget: float, min_calls: int = 3) -> float:
    """Median seconds per call of ``fn``, over ``budget`` seconds or ``min_calls``."""
    times: list[float] = []
    end = time.perf_counter() + budget
    while len(times) < min_calls or (time.perf_counter() < end and len(times) < 500):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times)


def psutil_loop(pid: int) -> tuple[int, int]:
    """The plain way: children() and each child's status(). (live, zombies)."""
    live = zombies = 0
    for child in psutil.Process(pid).children():
        try:
            status = child.status()
        except psutil.NoSuchProcess:
            continue
        if status == psutil.STATUS_ZOMBIE:
            zombies += 1
        else:
            live += 1
    return live, zombies


def part_monitor(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("3. monitor", flush=True)
    room, limits = process_room()
    largest = max(plan.monitor_sizes)
    unrelated = max(0, min(plan.unrelated, room - largest))
    table.notes.append(f"3: process limits: {limits}.")
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    hosts = [("few", 0), ("busy", unrelated)]
    for host, count in hosts:
        farm = None
        if count:
            farm, _pid = start_farm(procs, tools, "tree", str(count), "0", "600")
        try:
            for size in plan.monitor_sizes:
                live, zombies = size - size // 2, size // 2
                tree, pid = start_farm(procs, tools, "tree", str(live), str(zombies), "600")
                try:
                    label = f"{host_processes() - size:,} other processes"
                    monitor = Monitor(pid)
                    first = monitor.sample()
                    if (first.live, first.zombies) != (live, zombies):
                        table.notes.append(
                            f"3: monitor saw {first.live} live + {first.zombies} zombies,"
                            f" expected {live} + {zombies} ({size} children, {label})"
                        )
                    mon, plain = [], []
                    for _rnd in range(plan.rounds):
                        mon.append(time_per_call(monitor.sample, plan.monitor_budget))
                        plain.append(
                            time_per_call(functools.partial(psutil_loop, pid), plan.monitor_budget)
                        )
                    results[(host, size)] = (median(mon), median(plain), ratio_of(plain, mon))
                finally:
                    procs.stop(tree)
                m, p, r = results[(host, size)]
                row = Row(
                    "3",
                    f"monitor sample, {size:,} children, host with {label}",
                    fmt_ms(m),
                    f"psutil children()+status() {fmt_ms(p)}",
                    r,
                    notes="ratio: times faster",
                )
                if host == "busy" and size == 100:
                    row.target = f"≤ 1 ms and ≥ 5{X}"
                    row.met = m <= 0.001 and r >= 5
                table.add(row)
        finally:
            if farm is not None:
                procs.stop(farm)
    if unrelated < plan.unrelated:
        table.notes.append(f"3: only {unrelated:,} unrelated processes fit under the limits")
    for size in plan.monitor_sizes:
        few, busy = results[("few", size)][0], results[("busy", size)][0]
        row = Row(
            "3",
            f"monitor sample, {size:,} children: busy host / few",
            fmt_ms(busy),
            f"few-process host {fmt_ms(few)}",
            busy / few,
            notes="grows with the tree, not the host",
        )
        if size == 100:
            row.target, row.met = f"≈ 1{X} (≤ 1.25{X})", busy / few <= 1.25
        table.add(row)
    part_exactness(table, procs, tools, plan)
    table.notes.append(
        "3: children half live (sleeping), half zombies, of one parent; the monitor's"
        " time is a steady-state `Monitor(pid).sample()` (its first sample, which builds"
        " the psutil.Process cache, is not timed); the psutil loop builds its objects"
        " every time, as a plain script would. Each figure is the median over rounds of"
        " the median call."
    )


def scan_proc() -> dict[int, tuple[int, str, int]]:
    """Every process on the host: pid -> (ppid, state, start time)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        rest = data.rsplit(b")", 1)[1].split()
        found[int(name)] = (int(rest[1]), rest[0].decode(), int(rest[19]))
    return found


def descendants(scan: dict[int, tuple[int, str, int]], root: int) -> dict[int, tuple[str, int]]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state, _start) in scan.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = {}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out[child] = scan[child][1:]
            stack.append(child)
    return out


def part_exactness(
    table: Table, procs: Procs, tools: Tools, plan: Plan, monitor_class: type[Monitor] = Monitor
) -> None:
    """Does a sample miss what full scans before and after it both show?"""
    farm, pid = start_farm(procs, tools, "churn", f"{plan.churn_seconds + 5:g}")
    monitor = monitor_class(pid)
    captured: list[dict[int, str]] = []
    walk = monitor.walk

    def capturing_walk() -> tuple[dict[int, str], set[int]]:
        statuses, listed = walk()
        captured[:] = [statuses]
        return statuses, listed

    monitor.walk = capturing_walk  # type: ignore[method-assign]
    samples = zombies_checked = zombies_missed = live_checked = live_missed = 0
    end = time.monotonic() + plan.churn_seconds
    try:
        while time.monotonic() < end:
            before = descendants(scan_proc(), pid)
            monitor.sample()
            zombies = monitor.zombies.keys()  # the zombies present at that sample
            after = descendants(scan_proc(), pid)
            samples += 1
            statuses = captured[0]
            for child, (state, start) in before.items():
                if after.get(child) != (state, start):
                    continue  # changed during the sample: either answer is right
                if state == "Z":
                    zombies_checked += 1
                    zombies_missed += child not in zombies
                else:
                    live_checked += 1
                    live_missed += statuses.get(child, psutil.STATUS_ZOMBIE) == psutil.STATUS_ZOMBIE
    finally:
        procs.stop(farm)
    forks = monitor.stats.zombies_seen
    table.add(
        Row(
            "3",
            "monitor exactness under fork churn: zombies missed",
            f"{zombies_missed} of {zombies_checked:,}",
            f"full /proc scan before and after each of {samples:,} samples",
            target="0 misses",
            met=zombies_missed == 0,
            notes=f"{forks:,} distinct zombies seen; a parent forks every 0.5 ms,"
            " children live 0-10 ms, collected every 20 ms",
        )
    )
    table.add(
        Row(
            "3",
            "monitor exactness under fork churn: live children missed",
            f"{live_missed} of {live_checked:,}",
            "the same scans",
            target="0 misses",
            met=live_missed == 0,
        )
    )


# -- part 4: reap latency --------------------------------------------------------------


def runner_json(argv: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    try:
        return dict(json.loads(proc.stdout)["runs"][0])
    except (json.JSONDecodeError, KeyError, IndexError) as err:
        raise BenchError(f"zombiewatch: no JSON report ({proc.stderr.strip()[-300:]})") from err


def part_reap(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("4. reap latency", flush=True)
    n = plan.reap_connections
    common = [
        "--connections",
        str(n),
        "--concurrency",
        str(CONCURRENCY),
        "--settle",
        "0.5",
        "--interval",
        "0.01",
        "--json",
    ]
    variants: list[tuple[str, Callable[[], list[str]]]] = []
    if tools.has_c:
        assert tools.fork_server is not None
        c_server = tools.fork_server

        def c_argv() -> list[str]:
            port = free_port()
            return [
                PY,
                "-m",
                "zombiewatch",
                "run",
                "--flood",
                f"{HOST}:{port}",
                *common,
                "--",
                c_server,
                str(port),
            ]

        variants.append(("C fork server (zombiewatch run)", c_argv))
    for mode in ("sigchld", "pidfd", "reaper-thread"):
        if modes.get(mode).available():
            variants.append(
                (
                    f"zombiewatch `{mode}`",
                    lambda m=mode: [  # type: ignore[misc]
                        PY,
                        "-m",
                        "zombiewatch",
                        "--mode",
                        m,
                        "--child-delay",
                        "0",
                        *common,
                    ],
                )
            )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for rnd in range(plan.rounds):
        for name, argv in rotate(variants, rnd):
            runs[name].append(runner_json(argv(), timeout=120 + n * 0.05))
    base_name = variants[0][0]

    def p(run: dict[str, Any], key: str) -> float:
        return float((run.get("lifetime_ms") or {}).get(key) or 0.0)

    def short_lived(run: dict[str, Any]) -> float:
        # A zombie that lives L is seen by about min(L, I) / I samples, so the
        # share of children ever seen times the interval estimates the mean
        # of min(lifetime, interval): the part of the lifetime a sampling
        # interval cannot resolve.
        interval = float(run["effective_interval_ms"] or run["interval_ms"])
        return float(run["zombies_seen"]) / n * interval

    base_est = [short_lived(r) for r in runs[base_name]]
    for name, _ in variants:
        rs = runs[name]
        p50s, p99s = [p(r, "p50") for r in rs], [p(r, "p99") for r in rs]
        est = [short_lived(r) for r in rs]
        interval = median([r["interval_ms"] for r in rs])
        effective = median([r["effective_interval_ms"] or 0 for r in rs])
        seen = median([r["zombies_seen"] for r in rs])
        rate = median([r["conn_per_s"] for r in rs])
        fig = f"p50 {median(p50s):.1f} ms, p99 {median(p99s):.1f} ms; ≈ {median(est):.2f} ms"
        notes = (
            f"interval {interval:g} ms (effective {effective:.1f}); {seen:,.0f} of {n:,}"
            f" children seen as zombies; {rate:,.0f} conn/s; max"
            f" {median([p(r, 'max') for r in rs]):.1f} ms"
        )
        leaked = sum(r["leaked"] for r in rs)
        if leaked:
            notes += f"; {leaked} leaked"
        if name == base_name:
            table.add(Row("4", f"zombie lifetime, {name}", fig, "(the baseline)", notes=notes))
        else:
            table.add(
                Row(
                    "4",
                    f"zombie lifetime, {name}",
                    fig,
                    f"{base_name} ≈ {median(base_est):.2f} ms",
                    ratio_of(est, base_est),
                    notes=notes,
                )
            )
    table.notes.append(
        f"4: the runner (`zombiewatch --mode M --child-delay 0`, or `zombiewatch run --flood`"
        f" for the C server) floods {n:,} connections, {CONCURRENCY} at a time, with the"
        " zombiewatch flooder while the monitor samples every 10 ms; a lifetime runs from"
        " the first sample that sees a zombie to the first that does not, so it is"
        " quantised by the interval (p50 ≈ one interval whatever the mode) and most"
        " zombies that live less than one are never seen. The ≈ figure is the share of"
        " children seen as zombies times the interval: an estimate of the mean of"
        " min(lifetime, interval), which resolves what the interval cannot; the ratio"
        " compares that estimate with the C server's."
    )


# -- part 5: overhead of watching -------------------------------------------------------


def part_overhead(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("5. overhead of watching", flush=True)
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    targets = [("zombiewatch `sigchld`", [PY, "-m", "zombiewatch.server", config])]
    if plan.overhead_on_c and tools.fork_server:
        targets.append(("C fork server", [tools.fork_server]))
    for name, argv in targets:
        plain: list[float] = []
        watched: list[float] = []
        samples: list[float] = []
        shares: list[float] = []  # the watcher's CPU time per second of flood
        server = procs.start(argv)
        try:
            info = procs.ready(server)
            port, pid = int(info["port"]), int(info.get("pid", server.pid))
            flood(tools, port, 200, 2.0)
            for rnd in range(plan.overhead_rounds):
                for watching in rotate([False, True], rnd):
                    if not watching:
                        plain.append(flood(tools, port, UNTIL_DEADLINE, plan.overhead_seconds).rate)
                        continue
                    watcher = procs.start(
                        [
                            PY,
                            "-m",
                            "zombiewatch",
                            "watch",
                            str(pid),
                            "--json",
                            "--interval",
                            "0.01",
                            "--settle",
                            "0",
                        ]
                    )
                    try:
                        wait_sampling(watcher.pid)
                        cpu0, t0 = (
                            sum(psutil.Process(watcher.pid).cpu_times()[:2]),
                            time.monotonic(),
                        )
                        watched.append(
                            flood(tools, port, UNTIL_DEADLINE, plan.overhead_seconds).rate
                        )
                        cpu1 = sum(psutil.Process(watcher.pid).cpu_times()[:2])
                        shares.append((cpu1 - cpu0) / (time.monotonic() - t0))
                        watcher.send_signal(signal.SIGINT)
                        out, _ = watcher.communicate(timeout=30)
                        with contextlib.suppress(json.JSONDecodeError, KeyError, IndexError):
                            samples.append(json.loads(out)["runs"][0]["samples"])
                    finally:
                        procs.stop(watcher)
        finally:
            procs.stop(server)
        ratio = ratio_of(watched, plain)
        table.add(
            Row(
                "5",
                f"{name} watched by `zombiewatch watch` (10 ms)",
                fmt_rate(median(watched)),
                f"unwatched {fmt_rate(median(plain))}",
                ratio,
                f"≥ 0.95{X} (< 5% lower)",
                ratio >= 0.95,
                notes=f"the watcher used {median(shares):.0%} of one core;"
                f" {median(samples) if samples else 0:,.0f} samples per watch;"
                f" {plan.overhead_rounds} rounds of {plan.overhead_seconds:g} s",
            )
        )


def wait_sampling(pid: int) -> None:
    """Wait until ``zombiewatch watch`` runs its sampling thread."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).num_threads() >= 2:
                time.sleep(0.05)  # its first samples
                return
        time.sleep(0.02)
    raise BenchError("zombiewatch watch did not start sampling")


# -- server anatomy: what the forking parent carries --------------------------------------


FORK_RT = """
import os, sys, time
n = 400
t = time.perf_counter()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
us = (time.perf_counter() - t) / n * 1e6
with open("/proc/self/status") as f:
    rss = [int(l.split()[1]) for l in f if l.startswith("RssAnon:")][0]
print(us, len(sys.modules), rss)
"""


def part_anatomy(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("0. the forking parent", flush=True)
    variants = [
        ("`python -I -S`, nothing imported", [PY, "-I", "-S", "-c", FORK_RT]),
        (
            "`python` + `import zombiewatch.server` (how the server runs)",
            [PY, "-c", "import zombiewatch.server\n" + FORK_RT],
        ),
        (
            "`python` + `import socketserver` (ForkingTCPServer's parent)",
            [PY, "-c", "import socketserver\n" + FORK_RT],
        ),
    ]
    runs: dict[str, list[tuple[float, int, int]]] = {v[0]: [] for v in variants}
    for rnd in range(plan.rounds):
        for name, argv in rotate(variants, rnd):
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=60, cwd=tools.workdir, check=True
            )
            fork_us, mods, rss = out.stdout.split()
            runs[name].append((float(fork_us), int(mods), int(rss)))
    base = [r[0] for r in runs[variants[0][0]]]
    for name, _ in variants:
        rs = runs[name]
        us = [r[0] for r in rs]
        notes = f"{rs[0][1]} modules, anonymous RSS {rs[0][2] / 1024:.1f} MB"
        if name == variants[0][0]:
            table.add(
                Row(
                    "0",
                    f"fork + `_exit` + `waitpid`, {name}",
                    f"{median(us):.0f} µs",
                    "(the baseline)",
                    notes=notes,
                )
            )
        else:
            table.add(
                Row(
                    "0",
                    f"fork + `_exit` + `waitpid`, {name}",
                    f"{median(us):.0f} µs",
                    f"bare {median(base):.0f} µs",
                    ratio_of(us, base),
                    notes=notes,
                )
            )


# -- the run --------------------------------------------------------------------------------


def machine_facts(tools: Tools, started: float, load_start: tuple[float, ...]) -> list[str]:
    load_end = os.getloadavg()
    affinity = len(os.sched_getaffinity(0))
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC;"
        f" run took {time.monotonic() - started:.0f} s",
        f"- cores: {os.cpu_count()} ({affinity} usable); kernel {platform.system()}"
        f" {platform.release()} {platform.machine()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}),"
        f" psutil {psutil.__version__}, C compiler: {tools.cc_version}",
        f"- load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (the"
        " machine is shared: hence ratios of interleaved rounds)",
    ]


def write_doc(section: str) -> None:
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _old, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
            return
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(
        "# Benchmarks\n\nGenerated by `python benchmarks/bench.py` (#8).\n\n"
        f"{BEGIN}\n{section}\n{END}\n"
    )


PARTS: dict[str, Callable[[Table, Procs, Tools, Plan], None]] = {
    "anatomy": part_anatomy,
    "server": part_server,
    "flooder": part_flooder,
    "monitor": part_monitor,
    "reap": part_reap,
    "overhead": part_overhead,
}


def zombies_of(pids: set[int]) -> list[str]:
    """Zombies on the host whose parent is one of ``pids``."""
    found = []
    for pid, (ppid, state, _start) in scan_proc().items():
        if state == "Z" and ppid in pids:
            found.append(f"{pid} (parent {ppid})")
    return found


def main() -> None:
    """Run the benchmark, print the table, write docs/BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer modes and sizes, shorter")
    parser.add_argument("--no-cc", action="store_true", help="skip the C programs")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts (default: all of {','.join(PARTS)})",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc alone")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")
    if not sys.platform.startswith("linux"):
        parser.error("the benchmark reads /proc: Linux only")

    started, load_start = time.monotonic(), os.getloadavg()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of our servers come to us

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="zombiewatch-bench-") as tmp:
        workdir = Path(tmp)
        procs = Procs(workdir)
        tools = Tools(workdir)
        status = 0
        try:
            build_c(tools, args.no_cc)
            if not tools.has_c:
                table.notes.append("no C compiler (or --no-cc): the C columns are skipped")
            for name in parts:
                try:
                    PARTS[name](table, procs, tools, plan)
                except BenchError as err:
                    table.notes.append(f"{name}: could not measure: {err}")
                    print(f"  {name}: could not measure: {err}", file=sys.stderr)
        except KeyboardInterrupt:
            status = 130
        finally:
            procs.stop_all()
        left = zombies_of({os.getpid()})
        if left:
            table.notes.append(f"zombies left behind by this run: {', '.join(left)}")
    mode = "--quick" if args.quick else "full"
    facts = machine_facts(tools, started, load_start)
    section = "\n".join(
        [
            f"Command: `python benchmarks/bench.py{' --quick' if args.quick else ''}`"
            f" ({mode} run).",
            "",
            *facts,
            "",
            table.markdown(),
            "",
            *(f"- {note}" for note in table.notes),
        ]
    )
    print()
    print(section)
    if status:
        sys.exit(status)
    if not args.no_write and parts == list(PARTS):
        write_doc(section)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
