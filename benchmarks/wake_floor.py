"""The floor under an event watcher's cost: the CPU of one bare epoll
wake-up on this machine, in Python and in C, against which part 6's
"watcher CPU per child" is read (#14).

    python benchmarks/wake_floor.py [WAKES]     # default 3,000; about 8 s

A child process writes one byte to a pipe every millisecond; the parent
waits in ``epoll.poll()``, reads the byte and goes back to waiting: the
least any watcher woken per event pays (a wake-up, two syscalls, and in
Python the interpreter's loop). The same loop in C
(``benchmarks/c/wake_floor.c``) runs next, where a C compiler is found:
the floor of ``zombiewatch._pump``'s thread. Prints CPU per wake-up, user
and system, and the ratio. Bounded in count; the writers exit by
themselves.
"""

from __future__ import annotations

import os
import re
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

C_SOURCE = Path(__file__).resolve().parent / "c" / "wake_floor.c"


def python_floor(wakes: int) -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        for _ in range(wakes):
            os.write(w, b"x")
            time.sleep(0.001)
        os._exit(0)
    os.close(w)
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    before = resource.getrusage(resource.RUSAGE_SELF)
    seen = 0
    while True:
        ep.poll(5)
        seen += 1
        if not os.read(r, 4096):
            break
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(pid, 0)
    user = (after.ru_utime - before.ru_utime) / seen * 1e6
    system = (after.ru_stime - before.ru_stime) / seen * 1e6
    print(f"Python: {seen:,} wake-ups: {user + system:.1f} µs of CPU each", end="")
    print(f" (user {user:.1f}, system {system:.1f})")
    return user + system


def c_floor(wakes: int) -> float | None:
    cc = shutil.which("cc")
    if cc is None:
        print("C: skipped, no C compiler")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "wake_floor")
        subprocess.run([cc, "-O2", "-o", binary, str(C_SOURCE)], check=True)
        out = subprocess.run([binary, str(wakes)], check=True, capture_output=True, text=True)
    print(f"C: {out.stdout.strip()}")
    each = re.search(r": ([\d.]+) us", out.stdout)
    return float(each.group(1)) if each else None


def main() -> None:
    wakes = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    py = python_floor(wakes)
    c = c_floor(wakes)
    if c:
        print(f"Python / C: {py / c:.2f} times")


if __name__ == "__main__":
    main()
