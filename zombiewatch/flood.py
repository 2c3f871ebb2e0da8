"""Open many connections to a line server and check every reply.

Each connection sends ``lines`` lines, half-closes, and expects exactly the
same bytes back in upper case. Work is bounded twice: by the number of
connections and by a deadline for the whole flood; each connection also
has its own timeout. Traffic goes where the caller says, which the CLI
defaults to loopback.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zombiewatch import _stats

PROGRESS_EVERY = 0.2  # seconds


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


async def _one(
    host: str, port: int, index: int, lines: int, timeout: float, result: FloodResult
) -> None:
    sent = payload(index, lines)
    expected = sent.upper()
    started = time.monotonic()
    writer = None
    try:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.TimeoutError:
            result.failures["connect timeout"] += 1
            return
        except ConnectionRefusedError:
            result.failures["connection refused"] += 1
            return
        result.connect_latencies.append(time.monotonic() - started)
        writer.write(sent)
        writer.write_eof()
        try:
            reply = await asyncio.wait_for(reader.readexactly(len(expected)), timeout)
        except asyncio.IncompleteReadError as err:
            if err.partial.startswith(b"ERROR"):
                result.failures["error reply"] += 1
            else:
                result.failures["short reply"] += 1
            return
        except asyncio.TimeoutError:
            result.failures["reply timeout"] += 1
            return
        if reply != expected:
            # An ERROR line is the server refusing (busy, bad line); any
            # other difference is a wrong answer.
            why = "error reply" if reply.startswith(b"ERROR") else "wrong reply"
            result.failures[why] += 1
            return
        result.ok += 1
        result.latencies.append(time.monotonic() - started)
    except ConnectionResetError:
        result.failures["connection reset"] += 1
    except OSError as err:
        result.failures[err.strerror or type(err).__name__] += 1
    finally:
        if writer is not None:
            writer.close()


async def _flood(
    host: str,
    port: int,
    connections: int,
    concurrency: int,
    lines: int,
    timeout: float,
    deadline: float,
    progress: Callable[[int], None] | None,
) -> FloodResult:
    result = FloodResult(connections=connections, concurrency=concurrency)
    indexes = iter(range(connections))

    async def worker() -> None:
        for index in indexes:
            await _one(host, port, index, lines, timeout, result)

    async def report_progress() -> None:
        assert progress is not None
        while True:
            progress(result.ok + result.failed)
            await asyncio.sleep(PROGRESS_EVERY)

    began = time.monotonic()
    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, connections))]
    reporter = asyncio.ensure_future(report_progress()) if progress else None
    done, pending = await asyncio.wait(tasks, timeout=deadline)
    if reporter is not None:
        reporter.cancel()
    if progress is not None:
        progress(result.ok + result.failed)
    if pending:
        # Connections cut short or never started count as failed: the flood
        # stops by itself at the deadline, whatever the server does.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        result.failures["flood deadline"] += connections - result.ok - result.failed
    for task in done:
        task.result()  # a bug in a worker surfaces here, not as a lost count
    result.elapsed = time.monotonic() - began
    return result


def flood(
    host: str,
    port: int,
    connections: int,
    concurrency: int,
    lines: int = 1,
    timeout: float = 10.0,
    deadline: float = 300.0,
    progress: Callable[[int], None] | None = None,
) -> FloodResult:
    """Open ``connections`` connections, ``concurrency`` at a time; check each reply.

    ``progress(done)``, if given, is called every ``PROGRESS_EVERY`` seconds
    and once at the end with the number of connections finished so far.
    """
    return asyncio.run(
        _flood(host, port, connections, concurrency, lines, timeout, deadline, progress)
    )
