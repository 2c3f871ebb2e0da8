"""A stand-in for the kernel's process-events connector, for tests that
feed the event monitor events in an order of their choosing."""

from __future__ import annotations

import os

from zombiewatch import _cnproc

# Pids above pid_max belong to nobody: pidfd_open says ESRCH, as for a
# child already reaped before the monitor could watch it.
with open("/proc/sys/kernel/pid_max") as _f:
    NOBODY = int(_f.read()) + 100


class ScriptedConnector:
    """Stands in for ``_cnproc.Connector``: hands out the events given."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.events: list[tuple[int, int, int, int, int, int, int, int]] = []
        self.lost = 0
        self.pending = False

    def fork(self, ts: int, parent: int, child: int) -> None:
        self.events.append((_cnproc.FORK, ts, parent, parent, child, child, 0, 0))

    def exit(self, ts: int, pid: int, holder: int) -> None:
        self.events.append((_cnproc.EXIT, ts, pid, pid, 0, 17, holder, holder))

    def fileno(self) -> int:
        return self._r

    def read(self, limit: int = 4096) -> list[tuple[int, int, int, int, int, int, int, int]]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)
