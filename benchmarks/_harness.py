"""What every part of the benchmark shares, so that each measures the same way:
the plan of a run (full or ``--quick``), the table and its number formats,
the processes a run starts (each in its own session, stopped with its group,
their orphans collected by this process as child subreaper), ``/proc``
readings of CPU time, page faults and RSS, the C reference programs and the
two flooders, the process farm, and the machine facts and doc section a run
writes. What only one part needs stays in that part's ``part_*.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
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

from zombiewatch import _procfs, _proctl, modes, targets

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


def rotate(items: list[Any], by: int) -> list[Any]:
    """``items`` started at ``by``: A B C, then B C A, so every variant meets the others' noise."""
    by %= max(len(items), 1)
    return items[by:] + items[:by]


# -- processes ------------------------------------------------------------------


def prepare_run() -> None:
    """Adopt the orphans of our servers, and make SIGTERM end a run the way Ctrl-C does.

    As a child subreaper this process gets the workers a stopped server
    leaves behind, and collects them (see ``collect_orphans``). SIGTERM
    raises KeyboardInterrupt so that the ``finally`` that stops every
    process still runs.
    """
    _proctl.set_subreaper(True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


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
            # If this benchmark is SIGKILLed, the kernel sends its servers
            # SIGTERM, and their groups end with them.
            preexec_fn=_proctl.die_with_parent_preexec(signal.SIGTERM),
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
        try:
            return targets.read_ready_line(proc.stdout.fileno(), timeout)
        except TimeoutError:
            raise BenchError(f"{self.name(proc)}: no ready line in {timeout:g} s") from None
        except EOFError:
            proc.wait()
            raise BenchError(f"{self.name(proc)} ended: {self.stderr_tail(proc)}") from None

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
    for pid in _procfs.read_children(os.getpid()):
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


# -- the process farm: the trees and the churn the monitor samples ---------------------


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


# -- timing a call, reading the whole host --------------------------------------------


def time_per_call(fn: Callable[[], object], budget: float, min_calls: int = 3) -> float:
    """Median seconds per call of ``fn``, over ``budget`` seconds or ``min_calls``."""
    times: list[float] = []
    end = time.perf_counter() + budget
    while len(times) < min_calls or (time.perf_counter() < end and len(times) < 500):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times)


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


# -- what a run writes ----------------------------------------------------------------


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
