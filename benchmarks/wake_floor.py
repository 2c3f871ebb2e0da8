"""The floor under a Python event watcher's cost: the CPU of one bare epoll
wake-up of a Python process on this machine, against which part 6's
"watcher CPU per child" is read (#14).

    python benchmarks/wake_floor.py [WAKES]     # default 3,000; about 4 s

A child process writes one byte to a pipe every millisecond; the parent
waits in ``epoll.poll()``, reads the byte and goes back to waiting: the
least any watcher woken per event pays in Python (a wake-up, two syscalls,
the interpreter's loop). Prints CPU per wake-up, user and system. Bounded
in count; the writer exits by itself.
"""

from __future__ import annotations

import os
import resource
import select
import sys
import time


def main() -> None:
    wakes = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
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
    each = f"{user + system:.1f} µs of CPU each (user {user:.1f}, system {system:.1f})"
    print(f"{seen:,} wake-ups: {each}")


if __name__ == "__main__":
    main()
