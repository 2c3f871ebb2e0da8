"""Price the changes that docs/BENCHMARKS.md proposes, before anyone makes them (#8).

    python benchmarks/proposals.py [--quick] [--only server,monitor,flooder]

Each proposal is a prototype patched in at run time (this file edits no
project code) and measured against the current code, interleaved (A B A B
...), median of the rounds, the same way as ``benchmarks/bench.py``, whose
helpers it uses. Prints one table; writes nothing.

- server: zombiewatch's server in ``sigchld`` mode, current against each
  patch set, driven by the C epoll flooder; with each variant's page faults
  per connection (parent, and children collected), the currency a fork
  server pays in. A ceiling: the same server whose children close the
  connection at once without answering (completions per second, not
  answers): what no change to the worker can beat.
- monitor: ``Monitor.sample()`` against a prototype that keeps one
  ``/proc/PID/stat`` and one children descriptor open per watched process
  and re-reads them with ``pread``; checked for exactness the same way.
- flooder: ``zombiewatch.flood`` against a prototype on asyncio protocols
  (no streams, no ``wait_for`` tasks), with and without uvloop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
import psutil
from bench import PY, Plan, Procs, Row, Table, Tools, X, fmt_ms, fmt_rate, median, ratio_of

# psutil's own letters-to-status table, so the prototype answers what
# psutil.Process.status() answers.
from psutil._pslinux import PROC_STATUSES

from zombiewatch import _platform
from zombiewatch.errors import AccessDeniedError
from zombiewatch.monitor import Monitor

# -- server prototypes ------------------------------------------------------------

# Runs zombiewatch.server with a set of patches: argv = CONFIG PATCH[,PATCH...]
SERVER_LAUNCHER = r"""
import gc, os, socket, struct, sys
from zombiewatch import server as S

patches = set(filter(None, sys.argv[2].split(",")))

if "exit-at-once" in patches:
    # The ceiling: a worker that closes its connection and exits.
    def serve_worker(self, conn):
        conn.close()
    S.Server.serve_worker = serve_worker

if "lean-io" in patches:
    # Worker I/O on the raw descriptor: timeouts come from SO_RCVTIMEO and
    # SO_SNDTIMEO set once on the listener (accepted sockets inherit them)
    # instead of settimeout() (O_NONBLOCK + poll() before every call), and
    # no makefile()/BufferedReader/readline per connection.
    orig_bind = S.Server.bind

    def bind(self):
        bound = orig_bind(self)
        t = self.idle_timeout
        timeval = struct.pack("ll", int(t), int((t - int(t)) * 1e6))
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return bound

    def handle(self, conn):
        fd = conn.fileno()
        max_line = self.max_line
        pending = b""
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out
                    self._send_error(conn, f"idle for {self.idle_timeout:g} s")
                    return
                if not data:
                    if pending:  # a last line without newline, as readline() gives it
                        self._answer(conn, [pending], b"")
                    return
                pending += data
                if b"\n" not in data:
                    if len(pending) > max_line:
                        self._send_error(conn, f"line longer than {max_line} bytes")
                        return
                    continue
                *lines, pending = pending.split(b"\n")
                if not self._answer(conn, lines, b"\n"):
                    return
                if len(pending) > max_line:
                    self._send_error(conn, f"line longer than {max_line} bytes")
                    return
        except OSError:
            pass  # reset, broken pipe, or SO_SNDTIMEO: the client left

    def _answer(self, conn, lines, end):
        # Fast path: one check and one send for every complete line read.
        batch = end.join(lines) + end
        if (
            len(max(lines, key=len)) + len(end) <= self.max_line
            and b"\0" not in batch
            and S._is_utf8(batch)
        ):
            conn.sendall(batch.upper())
            return True
        for line in lines:  # slow path: answer up to the bad line, then the error
            if len(line) + len(end) > self.max_line:
                self._send_error(conn, f"line longer than {self.max_line} bytes")
                return False
            if b"\0" in line or not S._is_utf8(line + end):
                self._send_error(conn, "line has NUL or non-UTF-8 bytes")
                return False
            conn.sendall((line + end).upper())
        return True

    S.Server.bind = bind
    S.Server.handle = handle
    S.Server._answer = _answer

if "accept-batch" in patches:
    # Drain the backlog on each wakeup: one select() pass per burst of
    # clients, not per client; and build the socket from the descriptor
    # without the enum conversions socket.accept() does for its family.
    # The current _accept() runs unchanged for each connection; a listener
    # subclass says when the backlog is empty.
    ACCEPT_BATCH = 64
    drained = [False]

    class BatchListener(socket.socket):
        __slots__ = ()

        def accept(self):
            try:
                fd, addr = self._accept()
            except BlockingIOError:
                drained[0] = True
                raise
            return socket.socket(FAMILY[0], socket.SOCK_STREAM, 0, fileno=fd), addr

    FAMILY = [0]
    orig_accept = S.Server._accept

    def _accept(self):
        if type(self.listener) is not BatchListener:
            FAMILY[0] = int(self.listener.family)
            self.listener.__class__ = BatchListener
        drained[0] = False
        for _ in range(ACCEPT_BATCH):
            orig_accept(self)
            if drained[0] or self._paused or self._stopping:
                return

    S.Server._accept = _accept

if "no-flush" in patches:
    # No flush of stdout/stderr before each fork: the server writes its
    # ready line and its log lines whole and can flush right after each
    # (as here), so nothing is ever pending at a fork.
    class FlushedAtOnce:
        def __init__(self, stream):
            self._stream = stream

        def write(self, text):
            written = self._stream.write(text)
            self._stream.flush()
            return written

        def flush(self):
            pass

        def __getattr__(self, name):
            return getattr(self._stream, name)

    sys.stdout = FlushedAtOnce(sys.stdout)
    sys.stderr = FlushedAtOnce(sys.stderr)

if "gc-freeze" in patches:
    # Move everything allocated at start-up out of the collector's reach, so
    # no collection in the parent (one every ~700 allocations) walks, and
    # so writes to, the pages it shares with live children.
    orig_serve = S.Server.serve_forever

    def serve_forever(self):
        gc.collect()
        gc.freeze()
        orig_serve(self)

    S.Server.serve_forever = serve_forever

S.main([sys.argv[1]])
"""

SERVER_VARIANTS = [
    ("current `sigchld` server", ""),
    ("P1 lean worker I/O", "lean-io"),
    ("P2 accept the whole backlog per wakeup", "accept-batch"),
    ("P3 no stdout/stderr flush per fork", "no-flush"),
    ("P4 gc.freeze() before serving", "gc-freeze"),
    ("P1 + P2 + P3", "lean-io,accept-batch,no-flush"),
]


def fault_counts(pid: int) -> tuple[int, int]:
    """(own, collected children's) minor page faults of ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[7]), int(fields[8])


def measure_proto_server(
    procs: Procs, tools: Tools, patches: str, seconds: float
) -> tuple[float, float, float, float, float]:
    """(answers/s, completions/s, parent faults, children faults, CPU µs) per connection."""
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    proc = procs.start([PY, "-c", SERVER_LAUNCHER, config, patches])
    try:
        info = procs.ready(proc)
        port, pid = int(info["port"]), int(info["pid"])
        bench.flood(tools, port, 100, 1.5)
        f0, c0 = fault_counts(pid), bench.cpu_ticks(pid)
        result = bench.flood(tools, port, bench.UNTIL_DEADLINE, seconds)
        f1, c1 = fault_counts(pid), bench.cpu_ticks(pid)
    finally:
        procs.stop(proc)
    done = max(result.ok + result.failed, 1)
    completions = result.rate * done / max(result.ok, 1) if result.ok else done / seconds
    cpu = (c1[0] - c0[0] + c1[1] - c0[1]) * 1e6 / bench.CLK_TCK / done
    return result.rate, completions, (f1[0] - f0[0]) / done, (f1[1] - f0[1]) / done, cpu


def part_server(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("server", flush=True)
    variants = [*SERVER_VARIANTS, ("ceiling: workers exit without answering", "exit-at-once")]
    runs: dict[str, list[tuple[float, float, float, float, float]]] = {v[0]: [] for v in variants}
    for rnd in range(plan.rounds):
        for name, patches in bench.rotate(variants, rnd):
            runs[name].append(measure_proto_server(procs, tools, patches, plan.server_seconds))
    base_name = variants[0][0]
    base = [r[0] for r in runs[base_name]]
    for name, _patches in variants:
        rs = runs[name]
        ceiling = name.startswith("ceiling")
        rates = [r[1] if ceiling else r[0] for r in rs]
        notes = (
            f"page faults per connection: parent {median([r[2] for r in rs]):.0f},"
            f" children {median([r[3] for r in rs]):.0f}; CPU {median([r[4] for r in rs]):,.0f}"
            " µs per connection"
        )
        what = f"{name}{' (completions/s)' if ceiling else ''}"
        if name == base_name:
            table.add(Row("S", what, fmt_rate(median(rates)), "(the baseline)", notes=notes))
        else:
            table.add(
                Row(
                    "S",
                    what,
                    fmt_rate(median(rates)),
                    f"current {fmt_rate(median(base))}",
                    ratio_of(rates, base),
                    notes=notes,
                )
            )


# -- monitor prototype --------------------------------------------------------------

MAX_KEPT_FDS = 4096  # two per process; beyond this, open/read/close each time


class KeptFdMonitor(Monitor):
    """Monitor whose walk re-reads kept /proc descriptors with pread.

    A kept ``/proc/PID/stat`` descriptor belongs to that process, not to the
    number: once the process is collected, ``pread`` fails with ESRCH, so a
    reused pid can never be mistaken for the old process. One read gives
    the state and the thread count; a single-threaded process's children
    are then one more ``pread`` (no ``listdir`` of its tasks).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fds: dict[int, list[int]] = {}  # pid -> [stat fd, children fd or -1]

    def _stat(self, pid: int) -> tuple[str, int] | None:
        """(psutil status, threads) of ``pid``, or None if it is gone."""
        fds = self._fds.get(pid)
        try:
            if fds is None:
                fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
                if len(self._fds) * 2 < MAX_KEPT_FDS:
                    fds = self._fds[pid] = [fd, -1]
                    data = os.pread(fd, 1024, 0)
                else:
                    try:
                        data = os.read(fd, 1024)
                    finally:
                        os.close(fd)
            else:
                data = os.pread(fds[0], 1024, 0)
        except (FileNotFoundError, ProcessLookupError):
            self._forget(pid)
            return None
        except PermissionError as err:
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err
        rest = data[data.rindex(b")") + 2 :].split(b" ", 18)
        return PROC_STATUSES.get(rest[0].decode(), "?"), int(rest[17])

    def _children_of(self, pid: int, threads: int) -> list[int]:
        if threads != 1:
            return _platform.read_children(pid)
        fds = self._fds.get(pid)
        try:
            if fds is None:
                with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
                    data = f.read()
            else:
                if fds[1] < 0:
                    fds[1] = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
                # A seq_file read returns at most a page, whatever was asked:
                # read on until it returns nothing (one call for a leaf).
                data = chunk = os.pread(fds[1], 65536, 0)
                while chunk:
                    chunk = os.pread(fds[1], 65536, len(data))
                    data += chunk
        except (FileNotFoundError, ProcessLookupError):
            return []
        return [int(p) for p in data.split()]

    def _forget(self, pid: int) -> None:
        for fd in self._fds.pop(pid, ()):
            if fd >= 0:
                os.close(fd)

    def _status(self, pid: int) -> str | None:
        stat = self._stat(pid)
        return None if stat is None else stat[0]

    def walk(self) -> tuple[dict[int, str], set[int]]:
        # The same walk as Monitor.walk, with the reads replaced.
        statuses: dict[int, str] = {}
        self._holding = {}
        self._origin = {}
        stack = [self.root, *self._adopted()]
        listed = set(stack)
        zombie = psutil.STATUS_ZOMBIE
        while stack:
            pid = stack.pop()
            stat = self._stat(pid)
            if stat is None:
                continue
            status, threads = stat
            if pid != self.root:
                statuses[pid] = status
                if status == zombie:
                    continue  # a zombie has no children: they were reparented
            for child in self._children_of(pid, threads):
                if child not in listed:
                    listed.add(child)
                    stack.append(child)
                    self._origin[child] = pid
        return statuses, listed

    def _describe(self, pid: int, now: float) -> Any:
        if pid not in self._procs:
            try:
                self._procs[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
        return super()._describe(pid, now)

    def _sample(self) -> Any:
        point = super()._sample()
        for pid in [p for p in self._fds if p not in self._seen and p != self.root]:
            self._forget(pid)
        return point


def part_monitor(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("monitor", flush=True)
    for size in plan.monitor_sizes:
        live, zombies = size - size // 2, size // 2
        tree, pid = bench.start_farm(procs, tools, "tree", str(live), str(zombies), "600")
        try:
            current, proto = Monitor(pid), KeptFdMonitor(pid)
            for m in (current, proto):
                first = m.sample()
                assert (first.live, first.zombies) == (live, zombies), (type(m), first)
            a, b = [], []
            for _rnd in range(plan.rounds):
                a.append(bench.time_per_call(current.sample, plan.monitor_budget))
                b.append(bench.time_per_call(proto.sample, plan.monitor_budget))
            last = proto.sample()
            assert (last.live, last.zombies) == (live, zombies), last
        finally:
            procs.stop(tree)
        table.add(
            Row(
                "M",
                f"M1 kept /proc fds + pread, {size:,} children",
                fmt_ms(median(b)),
                f"current Monitor {fmt_ms(median(a))}",
                ratio_of(a, b),
                notes="ratio: times faster",
            )
        )
    # The prototype must stay exact: the same cross-check as bench.py.
    sub = Table()
    bench.part_exactness(sub, procs, tools, plan, KeptFdMonitor)
    for row in sub.rows:
        row.part, row.what = "M", row.what.replace("monitor", "M1")
        table.add(row)


# A watcher like `zombiewatch watch`: the monitor's thread samples every 10 ms
# until SIGINT. argv: PID current|m1
WATCHER = """
import json, sys, time
import proposals
from zombiewatch.monitor import Monitor

cls = proposals.KeptFdMonitor if sys.argv[2] == "m1" else Monitor
monitor = cls(int(sys.argv[1]), interval=0.01)
monitor.start()
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
monitor.stop()
print(json.dumps({"samples": monitor.stats.samples}))
"""


def part_overhead(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("overhead", flush=True)
    config = json.dumps({"mode": "sigchld", "child_delay": 0})
    variants = ["unwatched", "current", "m1"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    shares: dict[str, list[float]] = {v: [] for v in variants}  # watcher CPU per second
    server = procs.start([PY, "-m", "zombiewatch.server", config])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))
    try:
        info = procs.ready(server)
        port, pid = int(info["port"]), int(info["pid"])
        bench.flood(tools, port, 200, 2.0)
        for rnd in range(plan.overhead_rounds):
            for variant in bench.rotate(variants, rnd):
                watcher = None
                if variant != "unwatched":
                    watcher = procs.start([PY, "-c", WATCHER, str(pid), variant], env=env)
                    bench.wait_sampling(watcher.pid)
                try:
                    if watcher is not None:
                        cpu0 = sum(psutil.Process(watcher.pid).cpu_times()[:2])
                    t0 = time.monotonic()
                    result = bench.flood(tools, port, bench.UNTIL_DEADLINE, plan.overhead_seconds)
                    rates[variant].append(result.rate)
                    if watcher is not None:
                        cpu1 = sum(psutil.Process(watcher.pid).cpu_times()[:2])
                        shares[variant].append((cpu1 - cpu0) / (time.monotonic() - t0))
                finally:
                    if watcher is not None:
                        watcher.send_signal(signal.SIGINT)
                        watcher.communicate(timeout=30)
                        procs.stop(watcher)
    finally:
        procs.stop(server)
    base = rates["unwatched"]
    table.add(Row("O", "`sigchld` server, unwatched", fmt_rate(median(base)), "(the baseline)"))
    for variant, label in (("current", "current Monitor"), ("m1", "M1 kept-fd Monitor")):
        r = ratio_of(rates[variant], base)
        table.add(
            Row(
                "O",
                f"`sigchld` server watched by the {label} (10 ms)",
                fmt_rate(median(rates[variant])),
                f"unwatched {fmt_rate(median(base))}",
                r,
                f"≥ 0.95{X}",
                r >= 0.95,
                notes=f"the watcher used {median(shares[variant]):.1%} of one core",
            )
        )


# -- flooder prototype -----------------------------------------------------------------

# zombiewatch's flood on asyncio protocols: the same connections, payloads,
# checks and failure names, one timer per connection instead of two
# wait_for() tasks, no StreamReader/StreamWriter. argv: PORT CONNECTIONS [uvloop]
FLOOD_PROTO = r"""
import asyncio, collections, json, sys, time
from zombiewatch.flood import FloodResult, payload

class Exchange(asyncio.Protocol):
    __slots__ = ("sent", "expected", "done", "buf", "transport")

    def __init__(self, sent, expected, done):
        self.sent, self.expected, self.done, self.buf = sent, expected, done, b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.sent)
        transport.write_eof()

    def data_received(self, data):
        self.buf += data
        if len(self.buf) >= len(self.expected) and not self.done.done():
            self.done.set_result(None if self.buf[: len(self.expected)] == self.expected
                                 else "wrong reply")

    def eof_received(self):
        if not self.done.done():
            self.done.set_result("error reply" if self.buf.startswith(b"ERROR") else "short reply")

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result("connection reset" if exc else "short reply")

async def one(loop, host, port, index, lines, timeout, result):
    sent = payload(index, lines)
    expected = sent.upper()
    started = time.monotonic()
    done = loop.create_future()
    task = asyncio.current_task()
    state = {"timed_out": False}

    def expire():
        state["timed_out"] = True
        task.cancel()

    timer = loop.call_later(timeout, expire)
    transport = None
    try:
        transport, _ = await loop.create_connection(
            lambda: Exchange(sent, expected, done), host, port)
        result.connect_latencies.append(time.monotonic() - started)
        failure = await done
    except asyncio.CancelledError:
        if not state["timed_out"]:
            raise
        task.uncancel()
        failure = "reply timeout" if transport is not None else "connect timeout"
    except ConnectionRefusedError:
        failure = "connection refused"
    except OSError as err:
        failure = err.strerror or type(err).__name__
    finally:
        timer.cancel()
        if transport is not None:
            transport.close()
    if failure is None:
        result.ok += 1
        result.latencies.append(time.monotonic() - started)
    else:
        result.failures[failure] += 1

async def flood(host, port, connections, concurrency, lines=1, timeout=10.0):
    loop = asyncio.get_running_loop()
    result = FloodResult(connections=connections, concurrency=concurrency)
    indexes = iter(range(connections))

    async def worker():
        for index in indexes:
            await one(loop, host, port, index, lines, timeout, result)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, connections))))
    result.elapsed = time.monotonic() - began
    return result

if len(sys.argv) > 3 and sys.argv[3] == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
r = asyncio.run(flood("127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), 50))
print(json.dumps(r.to_dict()))
"""


# zombiewatch's flood as one epoll loop over non-blocking sockets, no asyncio:
# the C flooder's design in Python. argv: PORT CONNECTIONS
FLOOD_EPOLL = r"""
import errno, json, os, select, socket, sys, time
from zombiewatch.flood import FloodResult, payload

def flood(host, port, connections, concurrency, lines=1, timeout=10.0):
    result = FloodResult(connections=connections, concurrency=concurrency)
    ep = select.epoll()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = (host, port)
    live = {}  # fd -> [sock, to_send, expected, started, received, phase]
    next_index = 0
    monotonic = time.monotonic
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT

    def start():
        nonlocal next_index
        sent = payload(next_index, lines)
        next_index += 1
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            result.failures["connection refused" if err == errno.ECONNREFUSED
                            else os.strerror(err)] += 1
            return
        live[sock.fileno()] = [sock, sent, sent.upper(), monotonic(), b"", 0]
        ep.register(sock.fileno(), EPOLLOUT)

    def finish(fd, failure):
        state = live.pop(fd)
        ep.unregister(fd)
        state[0].close()
        if failure is None:
            result.ok += 1
            result.latencies.append(monotonic() - state[3])
        else:
            result.failures[failure] += 1

    began = monotonic()
    last_sweep = began
    while True:
        while len(live) < concurrency and next_index < connections:
            start()
        if not live:
            break
        for fd, _ev in ep.poll(0.05):
            state = live[fd]
            sock = state[0]
            if state[5] < 2:  # 0: connecting; 1: sending what did not fit at once
                if state[5] == 0:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(fd, "connection refused" if err == errno.ECONNREFUSED
                               else os.strerror(err))
                        continue
                    result.connect_latencies.append(monotonic() - state[3])
                    state[5] = 1
                try:
                    n = sock.send(state[1])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    finish(fd, exc.strerror or type(exc).__name__)
                    continue
                state[1] = state[1][n:]
                if state[1]:
                    continue  # EPOLLOUT again when there is room
                sock.shutdown(socket.SHUT_WR)
                state[5] = 2
                ep.modify(fd, EPOLLIN)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                finish(fd, "connection reset")
                continue
            except OSError as exc:
                finish(fd, exc.strerror or type(exc).__name__)
                continue
            expected = state[2]
            if not data:
                finish(fd, "error reply" if state[4].startswith(b"ERROR") else "short reply")
                continue
            received = state[4] = state[4] + data
            if len(received) >= len(expected):
                finish(fd, None if received[: len(expected)] == expected else "wrong reply")
        now = monotonic()
        if now - last_sweep >= 0.05:
            last_sweep = now
            for fd in [fd for fd, st in live.items() if now - st[3] > timeout]:
                finish(fd, "reply timeout" if live[fd][5] else "connect timeout")
    ep.close()
    result.elapsed = monotonic() - began
    return result

r = flood("127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), 50)
print(json.dumps(r.to_dict()))
"""


def proto_flood(tools: Tools, port: int, connections: int, on_uvloop: bool, code: str) -> float:
    python = tools.uvloop_python if on_uvloop else PY
    assert python is not None
    argv = [python, "-c", code, str(port), str(connections)]
    argv += ["uvloop"] if on_uvloop else []
    env = dict(os.environ, PYTHONPATH=str(bench.ROOT))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    data = json.loads(proc.stdout)
    if data["failed"]:
        raise bench.BenchError(f"prototype flooder: {data['failures']}")
    return float(data["conn_per_s"])


def part_flooder(table: Table, procs: Procs, tools: Tools, plan: Plan) -> None:
    print("flooder", flush=True)
    if not tools.fork_server:
        table.notes.append("flooder: skipped: no C compiler")
        return
    names = ["c", "current", "F1", "F2"]
    names += ["current+uvloop", "F1+uvloop"] if tools.uvloop_python else []
    rates: dict[str, list[float]] = {n: [] for n in names}
    n = plan.flood_connections
    server = procs.start([tools.fork_server])
    try:
        port = int(procs.ready(server)["port"])
        bench.flood(tools, port, 200, 2.0)
        for rnd in range(plan.rounds):
            for name in bench.rotate(names, rnd):
                if name == "c":
                    rate = bench.flood(tools, port, n, 60.0, "c").rate
                elif name == "current":
                    rate = bench.flood(tools, port, n, 60.0, "zombiewatch").rate
                elif name == "current+uvloop":
                    rate = bench.flood(tools, port, n, 60.0, "uvloop").rate
                elif name == "F2":
                    rate = proto_flood(tools, port, n, False, FLOOD_EPOLL)
                else:
                    rate = proto_flood(tools, port, n, name.endswith("uvloop"), FLOOD_PROTO)
                rates[name].append(rate)
    finally:
        procs.stop(server)
    labels = {
        "c": "C epoll flooder → C fork server",
        "current": "zombiewatch flood (current) → C fork server",
        "F1": "F1 flood on asyncio protocols → C fork server",
        "current+uvloop": "zombiewatch flood (current) on uvloop → C fork server",
        "F1+uvloop": "F1 on uvloop → C fork server",
        "F2": "F2 flood as one epoll loop, no asyncio → C fork server",
    }
    for name in names:
        if name == "c":
            table.add(Row("F", labels[name], fmt_rate(median(rates[name])), "(the baseline)"))
        else:
            r = ratio_of(rates[name], rates["c"])
            table.add(
                Row(
                    "F",
                    labels[name],
                    fmt_rate(median(rates[name])),
                    f"C epoll flooder {fmt_rate(median(rates['c']))}",
                    r,
                    f"≥ 0.9{X}",
                    r >= 0.9,
                )
            )


PARTS = {
    "server": part_server,
    "monitor": part_monitor,
    "overhead": part_overhead,
    "flooder": part_flooder,
}


def main() -> None:
    """Measure each prototype against the current code; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--uvloop", action="store_true", help="also on uvloop (scratch venv)")
    parser.add_argument("--only", default=",".join(PARTS))
    args = parser.parse_args()
    plan = bench.QUICK if args.quick else bench.FULL
    started, load = time.monotonic(), os.getloadavg()
    bench._prctl(bench._PR_SET_CHILD_SUBREAPER, 1)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    table = Table()
    with tempfile.TemporaryDirectory(prefix="zombiewatch-proposals-") as tmp:
        procs, tools = Procs(Path(tmp)), Tools(Path(tmp))
        try:
            bench.build_c(tools, no_cc=False)
            if args.uvloop:
                table.notes.append(bench.prepare_uvloop(tools))
            for name in args.only.split(","):
                PARTS[name.strip()](table, procs, tools, plan)
        except KeyboardInterrupt:
            sys.exit(130)
        finally:
            procs.stop_all()
        facts = bench.machine_facts(tools, started, load)
    print()
    print("\n".join([*facts, "", table.markdown(), "", *(f"- {n}" for n in table.notes)]))


if __name__ == "__main__":
    main()
