"""A daemon that double-forks, as a classic Unix daemon does: the first
child starts a session and forks the daemon proper, then exits at once,
so the daemon is orphaned to PID 1 (of its namespace). The daemon then
lives LIFE seconds (default 0.3) and exits: a zombie for its new parent
to collect. The script itself waits for the first child, as a shell's
`daemon &` would not need to, and exits 0."""

import os
import sys
import time

life = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            time.sleep(life)  # the daemon's work
    finally:
        os._exit(0)
os.waitpid(pid, 0)
