"""What `zombiewatch export` costs (#19): CPU per scrape on a crowded host,
and memory over a long soak.

    python benchmarks/export_cost.py scrape [--sizes 0,10000] [--rounds 5] [--scrapes 20]
    python benchmarks/export_cost.py soak SECONDS [--every 1] [--steady]

``scrape``: for each size, ``proc_farm`` (benchmarks/c/proc_farm.c, built
with cc; a Python stand-in without it) adds that many sleeping processes
and 20 zombies to the host. An exporter (``--observe scan``, so only the
scrape is measured) is scraped ``--scrapes`` times per round; its own CPU
time (``/proc/PID/stat`` utime + stime) over the round, divided by the
scrapes, is the figure. Interleaved with each round, the same number of
``ps -eo pid,ppid,stat`` runs, the tool people reach for, give the baseline
(their CPU from ``getrusage(RUSAGE_CHILDREN)``). Medians of the rounds.

``soak``: an exporter with kernel events where they work (the default
``--observe auto``), scraped every ``--every`` seconds for SECONDS, while a
churning parent forks a child every 5 ms and leaks one zombie every 2 s
(collecting them at the end); with ``--steady`` it holds 100 zombies
from the start and leaks none, so the exporter's own state should not grow.
The exporter's RSS, descriptors and CPU are sampled every 10 s; the
verdict compares the RSS after a one-minute warm-up (or a tenth of the
run, if shorter) with the end and with a straight line fitted to the
samples after it.

Not part of the test suite: a timing is a measurement, not an assertion.
Everything started runs in its own session and is stopped with its group;
this process is a child subreaper and collects every orphan.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _harness as h
from watch_soak import CHURN  # forks every 5 ms, leaks one zombie every 2 s

# The same churn with no leak: 100 zombies held from the start, none added,
# so whatever grows in the exporter is its own.
STEADY = """
import os, sys, time
held = []
for _ in range(100):
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the child never goes on with the loop
    held.append(pid)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.005)
for pid in held:
    os.waitpid(pid, 0)
"""


def start_exporter(procs: h.Procs, *args: str) -> tuple[object, str]:
    proc = procs.start([h.PY, "-m", "zombiewatch", "export", "--listen", "127.0.0.1:0", *args])
    ready = procs.ready(proc, timeout=60)
    return proc, f"http://127.0.0.1:{ready['port']}/metrics"


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


def sample_value(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise h.BenchError(f"no {name} in the exposition")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_scrapes(procs: h.Procs, rounds: int, scrapes: int) -> dict[str, float]:
    proc, url = start_exporter(procs, "--observe", "scan")
    pid = proc.pid  # type: ignore[attr-defined]
    for _ in range(3):
        scrape(url)  # warm: imports, first psutil reads
    exporter_cpu, ps_cpu, wall, scanned, scan_time = [], [], [], [], []
    for _ in range(rounds):
        own0 = sum(h.cpu_ticks(pid)) / h.CLK_TCK
        t0 = time.perf_counter()
        for _ in range(scrapes):
            text = scrape(url)
        wall.append((time.perf_counter() - t0) / scrapes)
        exporter_cpu.append((sum(h.cpu_ticks(pid)) / h.CLK_TCK - own0) / scrapes)
        scanned.append(sample_value(text, "zombiewatch_scanned_processes"))
        scan_time.append(sample_value(text, "zombiewatch_scan_duration_seconds"))
        c0 = children_cpu()
        for _ in range(scrapes):
            subprocess.run(["ps", "-eo", "pid,ppid,stat"], capture_output=True, check=True)
        ps_cpu.append((children_cpu() - c0) / scrapes)
    procs.stop(proc)  # type: ignore[arg-type]
    return {
        "processes": statistics.median(scanned),
        "cpu": statistics.median(exporter_cpu),
        "wall": statistics.median(wall),
        "scan": statistics.median(scan_time),
        "ps_cpu": statistics.median(ps_cpu),
        "ratio": h.ratio_of(exporter_cpu, ps_cpu),
    }


def run_scrape(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="zw-export-bench-") as tmp:
        tools = h.Tools(Path(tmp))
        h.build_c(tools, no_cc=False)
        procs = h.Procs(Path(tmp))
        try:
            print("| extra processes | host processes | exporter CPU per scrape | wall per scrape"
                  " | scan itself | `ps -eo pid,ppid,stat` CPU | ratio |")  # fmt: skip
            print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for size in sizes:
                farm = None
                if size:
                    farm, _pid = h.start_farm(procs, tools, "tree", str(size), "20", "900")
                got = measure_scrapes(procs, args.rounds, args.scrapes)
                print(
                    f"| {size:,} | {got['processes']:,.0f} | {got['cpu'] * 1000:.1f} ms"
                    f" | {got['wall'] * 1000:.1f} ms | {got['scan'] * 1000:.1f} ms"
                    f" | {got['ps_cpu'] * 1000:.1f} ms | {h.fmt_ratio(got['ratio'])} |",
                    flush=True,
                )
                if farm is not None:
                    procs.stop(farm)
        finally:
            procs.stop_all()
    print(f"\ncc: {tools.cc_version}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")


def run_soak(args: argparse.Namespace) -> None:
    seconds = args.seconds
    warmup = min(60.0, seconds / 10)
    with tempfile.TemporaryDirectory(prefix="zw-export-soak-") as tmp:
        procs = h.Procs(Path(tmp))
        try:
            churn = procs.start([h.PY, "-c", STEADY if args.steady else CHURN, str(seconds + 60)])
            proc, url = start_exporter(procs)
            pid = proc.pid  # type: ignore[attr-defined]
            started = time.monotonic()
            samples: list[tuple[float, int, int, float, float, float]] = []
            next_sample = started
            scrapes = 0
            while (now := time.monotonic()) - started < seconds:
                text = scrape(url)
                scrapes += 1
                if now >= next_sample:
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                    cpu = sum(h.cpu_ticks(pid)) / h.CLK_TCK
                    created = _maybe(text, "zombiewatch_zombies_created_total")
                    zombies = sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.decode().splitlines()
                        if line.startswith("zombiewatch_zombies{")
                    )
                    samples.append((now - started, h.rss_kb(pid), fds, cpu, created, zombies))
                    t, rss, fds, cpu, created, zombies = samples[-1]
                    print(f"{t:7.0f} s  rss {rss:7,} kB  fds {fds:4}  cpu {cpu:7.2f} s"
                          f"  exits seen {created:9,.0f}  zombies now {zombies:5,.0f}",
                          flush=True)  # fmt: skip
                    next_sample += 10
                time.sleep(max(0.0, args.every - (time.monotonic() - now)))
            procs.stop(proc)  # type: ignore[arg-type]
            procs.stop(churn)
        finally:
            procs.stop_all()
    after = [s for s in samples if s[0] >= warmup] or samples
    first, last = after[0], after[-1]
    times = [s[0] for s in after]
    slope = (
        statistics.linear_regression(times, [s[1] for s in after]).slope if len(after) > 1 else 0
    )
    peak = max(s[1] for s in after)
    print(
        f"\nsoak {seconds:g} s, {scrapes:,} scrapes (every {args.every:g} s):"
        f" RSS {first[1]:,} kB after {first[0]:.0f} s, {last[1]:,} kB at the end,"
        f" peak {peak:,} kB; fitted slope {slope * 3600:+,.0f} kB/hour;"
        f" descriptors {first[2]} -> {last[2]};"
        f" CPU {(last[3] - samples[0][3]) / max(1.0, last[0] - samples[0][0]) * 100:.2f} %"
        f" of one core; {last[4] - samples[0][4]:,.0f} exits seen"
    )


def _maybe(text: bytes, name: str) -> float:
    try:
        return sample_value(text, name)
    except h.BenchError:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("scrape", help="CPU per scrape on a crowded host")
    one.add_argument("--sizes", default="0,10000", help="extra processes, comma-separated")
    one.add_argument("--rounds", type=int, default=5)
    one.add_argument("--scrapes", type=int, default=20)
    soak = sub.add_parser("soak", help="memory over a long run")
    soak.add_argument("seconds", type=float, help="how long to run (an hour: 3600)")
    soak.add_argument("--every", type=float, default=1.0, help="seconds between scrapes")
    soak.add_argument(
        "--steady", action="store_true", help="hold 100 zombies throughout instead of leaking"
    )
    args = parser.parse_args()
    h.prepare_run()
    try:
        run_scrape(args) if args.what == "scrape" else run_soak(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except h.BenchError as err:
        sys.exit(f"export_cost: {err}")


if __name__ == "__main__":
    main()
