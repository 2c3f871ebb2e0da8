"""The kernel's process-events connector: every fork and exit on the
machine, each with the kernel's own timestamp (Linux).

A netlink socket (``NETLINK_CONNECTOR``) bound to the ``CN_IDX_PROC``
group receives one datagram per event once it has sent
``PROC_CN_MCAST_LISTEN``. Since Linux 6.6 the listen message may carry a
mask of the events wanted, and the kernel drops the others before they
reach the socket (docs/FACTS.md, "Kernel events"); older kernels take only
the bare message and send everything. This module owns the socket, the
subscription and the parsing; following one tree is ``events``'s.

Pids in events are the initial PID namespace's, so a listener inside
another PID namespace would read them as the wrong processes:
``unavailable_reason`` refuses there, as it does without CAP_NET_ADMIN or
where the connector is not built in.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_CONNECTOR = 11  # <linux/netlink.h>
CN_IDX_PROC = 1  # <linux/connector.h>
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1  # <linux/cn_proc.h>
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: past rmem_max, with CAP_NET_ADMIN

FORK = 0x00000001  # PROC_EVENT_FORK
EXEC = 0x00000002
EXIT = 0x80000000  # PROC_EVENT_EXIT

# Each datagram: nlmsghdr (16 bytes), cn_msg (20), then struct proc_event:
# what, cpu, timestamp_ns (aligned to 8 within the event), and a union of at
# least 24 bytes. fork: parent pid, tgid, child pid, tgid; exit: pid, tgid,
# exit code, exit signal, parent pid, tgid (the parent at exit).
_EVENT = struct.Struct("=I4xQ6i")
_OFFSET = 36
_MIN_SIZE = _OFFSET + _EVENT.size

# One burst of a fork server is thousands of events; at ~100 bytes of
# kernel memory each (skb included) 8 MiB holds tens of thousands.
DEFAULT_RCVBUF = 8 << 20


class ConnectorError(OSError):
    """The connector cannot be used here; the message says why."""


def _kernel_filters() -> bool:
    """Return True if this kernel takes an event mask with the listen message
    (Linux 6.6+); an older one ignores a message of that size altogether."""
    release = os.uname().release.split(".")
    try:
        major, minor = int(release[0]), int("".join(c for c in release[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (6, 6)


def _in_initial_pid_namespace() -> bool:
    # NSpid lists our pid in each nested namespace, outermost first: one
    # entry means the initial namespace, whose pids the events carry.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        return False
    return True  # kernels before 4.1 have no NSpid line and no nesting check


class Connector:
    """A subscribed listener. ``read()`` returns the events waiting, oldest
    first; non-blocking, so it belongs in a selector (``fileno()``).

    Where the kernel filters per listener, exit events come on a socket of
    their own (``exit_fileno()``) that nobody needs to wait on: an exit
    event carries its time, and nothing has to be done the moment it comes
    (a fork event does: the child's pidfd must be opened before its parent
    reaps it). A watcher then wakes for forks and reaps, not for exits;
    ``read()`` reads both sockets and gives their events in time order.

    ``lost`` counts the times the kernel dropped events because the socket
    buffer was full (ENOBUFS): each may be any number of events, so the
    caller must resynchronise from ``/proc`` and say so.
    """

    datagrams = True  # fileno() delivers the kernel's datagrams (see _feeds)

    def __init__(self, rcvbuf: int = DEFAULT_RCVBUF, wanted: int = FORK | EXIT) -> None:
        if not hasattr(socket, "AF_NETLINK"):
            raise ConnectorError(errno.ENOSYS, "process events need Linux")
        if not _in_initial_pid_namespace():
            raise ConnectorError(
                errno.EPERM, "process events carry the host's pids, and this is a PID namespace"
            )
        split = _kernel_filters() and wanted & FORK and wanted & EXIT
        self._sock = self._subscribe(rcvbuf, wanted & ~EXIT if split else wanted)
        try:
            self._exits = self._subscribe(rcvbuf, EXIT) if split else None
        except ConnectorError:
            self._sock.close()
            raise
        self._buf = bytearray(256)  # one event is 76 bytes
        self.lost = 0
        self.pending = False  # did the last read() stop at its limit, with more waiting?

    @classmethod
    def _subscribe(cls, rcvbuf: int, wanted: int) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as err:
            raise ConnectorError(
                err.errno, f"no process-events connector here ({err.strerror})"
            ) from err
        try:
            cls._size_buffer(sock, rcvbuf)
            sock.bind((0, CN_IDX_PROC))
            sock.send(cls._listen_message(wanted))
        except OSError as err:
            sock.close()
            why = err.strerror
            if err.errno in (errno.EPERM, errno.EACCES):
                why = "needs root or CAP_NET_ADMIN in the initial namespaces (before Linux 6.6)"
            raise ConnectorError(err.errno, f"cannot listen to process events: {why}") from err
        sock.setblocking(False)
        return sock

    @staticmethod
    def _size_buffer(sock: socket.socket, size: int) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:  # not privileged: capped by net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    @staticmethod
    def _listen_message(wanted: int) -> bytes:
        if _kernel_filters():
            data = struct.pack("=II", PROC_CN_MCAST_LISTEN, wanted)  # struct proc_input
        else:
            data = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn_msg = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(data), 0) + data
        return struct.pack("=IHHII", 16 + len(cn_msg), NLMSG_DONE, 0, 0, 0) + cn_msg

    def fileno(self) -> int:
        return self._sock.fileno()

    def exit_fileno(self) -> int:
        """The socket of exit events, read but never waited on; -1 where
        they come with the others."""
        return -1 if self._exits is None else self._exits.fileno()

    def read(self, limit: int = 4096) -> list[tuple[int, int, int, int, int, int, int, int]]:
        """Return up to ``limit`` waiting events as (what, timestamp_ns, six fields).

        The fields are those of the fork or exit record (see the layout
        above); events of other kinds (the subscription's ack, or
        everything on a kernel that cannot filter) are left out.
        """
        if self._exits is None:
            return self._read(self._sock, limit)
        exits = self._read(self._exits, limit)  # first: no exit comes before its fork
        pending = self.pending
        events = self._read(self._sock, limit)
        self.pending = self.pending or pending
        if exits and events:
            return sorted(exits + events, key=lambda event: event[1])  # two runs: merged
        return exits or events

    def _read(
        self, sock: socket.socket, limit: int
    ) -> list[tuple[int, int, int, int, int, int, int, int]]:
        events = []
        recv_into, buf, unpack = sock.recv_into, self._buf, _EVENT.unpack_from
        self.pending = True  # until a read finds the socket empty
        for _ in range(limit):
            try:
                size = recv_into(buf)
            except BlockingIOError:
                self.pending = False
                break
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                self.lost += 1  # the kernel dropped events; the socket still works
                continue
            if size >= _MIN_SIZE:
                event = unpack(buf, _OFFSET)
                if event[0] == FORK or event[0] == EXIT:
                    events.append(event)
        return events

    def close(self) -> None:
        self._sock.close()
        if self._exits is not None:
            self._exits.close()


def unavailable_reason() -> str | None:
    """Say why process events cannot be had here, or None where they can."""
    try:
        Connector(rcvbuf=4096).close()
    except ConnectorError as err:
        return err.strerror
    return None
