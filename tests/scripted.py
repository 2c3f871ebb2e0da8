"""A stand-in for the kernel's process-events connector, for tests that
feed the event monitor events in an order of their choosing."""

from __future__ import annotations

import socket
import struct

from zombiewatch import _cnproc

# Pids above pid_max belong to nobody: pidfd_open says ESRCH, as for a
# child already reaped before the monitor could watch it.
with open("/proc/sys/kernel/pid_max") as _f:
    NOBODY = int(_f.read()) + 100


def datagram(event: tuple[int, int, int, int, int, int, int, int]) -> bytes:
    """``event`` as the kernel sends it: nlmsghdr, cn_msg, proc_event."""
    what, ts, *fields = event
    body = struct.pack("=II", _cnproc.CN_IDX_PROC, _cnproc.CN_VAL_PROC) + struct.pack(
        "=IIHH", 0, 0, 40, 0
    )
    body += struct.pack("=IIQ6i", what, 0, ts, *fields)
    return struct.pack("=IHHII", 16 + len(body), _cnproc.NLMSG_DONE, 0, 0, 0) + body


class ScriptedConnector:
    """Stands in for ``_cnproc.Connector``: hands out the events given, to
    ``read()`` (the Python feed) and as datagrams on ``fileno()`` (the
    native feed reads those, as it reads the kernel's)."""

    datagrams = True

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._r.setblocking(False)
        self.events: list[tuple[int, int, int, int, int, int, int, int]] = []
        self.lost = 0
        self.pending = False

    def _send(self, event: tuple[int, int, int, int, int, int, int, int]) -> None:
        self.events.append(event)
        self._w.send(datagram(event))

    def fork(self, ts: int, parent: int, child: int) -> None:
        self._send((_cnproc.FORK, ts, parent, parent, child, child, 0, 0))

    def exit(self, ts: int, pid: int, holder: int) -> None:
        self._send((_cnproc.EXIT, ts, pid, pid, 0, 17, holder, holder))

    def fileno(self) -> int:
        return self._r.fileno()

    def read(self, limit: int = 4096) -> list[tuple[int, int, int, int, int, int, int, int]]:
        events, self.events = self.events, []
        try:
            while self._r.recv(256):  # what the native feed would have read
                pass
        except BlockingIOError:
            pass
        return events

    def close(self) -> None:
        self._r.close()
        self._w.close()
