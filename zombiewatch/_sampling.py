"""How a sample reads one process: its state, its children, who it is.

The monitor walks a tree every interval; this module owns the reads it
makes, behind one interface (``ProcessSource``) with two backends:

- ``ProcfsSource`` (Linux): ``/proc`` files kept open and re-read with
  ``pread`` (``_procfs.ProcReader``); children from each task's
  ``children`` file, O(children).
- ``PsutilSource`` (anywhere psutil can list children): ``status()`` and
  ``children()``, which psutil answers by scanning every process, O(host).

``open_source()`` picks the first that works here. Where neither does it
refuses with the reason (``UnsupportedError``, exit 2): a monitor that
cannot list children would see none and call every program clean.
"""

from __future__ import annotations

import os
from typing import Protocol

import psutil

from zombiewatch import _platform, _procfs
from zombiewatch.errors import AccessDeniedError, UnsupportedError


class ProcessSource(Protocol):
    """The reads a sample makes. A process that is gone is None or no
    children, never an error; one that may not be read raises
    ``AccessDeniedError``."""

    name: str

    def stat(self, pid: int, renew: bool) -> tuple[str, int] | None:
        """Return ``pid``'s psutil status and thread count (0: unknown), or
        None if it is gone. The status is the thread group's: "zombie" only
        when every thread has exited. Without ``renew``, a backend that pins processes
        answers for the process first read under that pid; with it, for
        the pid's owner now (the walk just listed it)."""
        ...

    def children(self, pid: int, threads: int) -> list[int]:
        """Return ``pid``'s children; ``threads`` is what ``stat`` said."""
        ...

    def describe(self, pid: int) -> tuple[int, str] | None:
        """Return the parent pid and name of a process just seen, or None if
        it is gone."""
        ...

    def retain(self, keep: set[int]) -> None:
        """Forget what is held for every process not in ``keep``."""
        ...

    def close(self) -> None:
        """Release what the source holds; it stays usable. Idempotent."""
        ...


class ProcfsSource:
    """Linux: kept ``/proc`` descriptors, re-read with ``pread``.

    A kept descriptor belongs to the process it was opened on, so a direct
    check (``renew=False``) of a zombie that churn hid from a children list
    reads that zombie, never a new process that took its pid.
    """

    name = "procfs"

    def __init__(self) -> None:
        self.reader = _procfs.ProcReader()

    def stat(self, pid: int, renew: bool) -> tuple[str, int] | None:
        stat = self.reader.stat(pid, renew)
        # The thread group's status: a main thread that exited while others
        # run is not a zombie (``ProcStat.group_exited``, the rule scan uses).
        return None if stat is None else (stat.group_status, stat.num_threads)

    def children(self, pid: int, threads: int) -> list[int]:
        return self.reader.children(pid, threads)

    def describe(self, pid: int) -> tuple[int, str] | None:
        # The kept descriptor has both in one pread; past the descriptor cap
        # nothing is kept for it, and the file is opened once more.
        stat = self.reader.reread(pid) or _procfs.read_stat(pid)
        return None if stat is None else (stat.ppid, stat.comm)

    def retain(self, keep: set[int]) -> None:
        reader = self.reader
        for pid in reader.pids():
            if pid not in keep:
                reader.forget(pid)

    def close(self) -> None:
        self.reader.close()


class PsutilSource:
    """Anywhere psutil runs: one ``psutil.Process`` per process in view.

    psutil pins a process by its pid and start time, so a handle whose pid
    was reused raises NoSuchProcess rather than reading the newcomer.
    """

    name = "psutil"

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = self._procs[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
            except psutil.AccessDenied as err:
                raise AccessDeniedError(f"may not read process {pid}: {err}") from err
        return proc

    def stat(self, pid: int, renew: bool) -> tuple[str, int] | None:
        try:
            proc = self._process(pid)
            if proc is None:
                return None
            status = proc.status()
            if status == psutil.STATUS_ZOMBIE and proc.num_threads() > 1:
                # Its main thread exited, others run: alive, as
                # ProcStat.group_exited rules for the procfs backend.
                return psutil.STATUS_RUNNING, 0
            return status, 0
        except psutil.NoSuchProcess:  # includes ZombieProcess: it exited and went
            held = self._procs.pop(pid, None)
            # The walk just listed this pid, so it has a new owner: read it.
            return self.stat(pid, renew=False) if renew and held is not None else None
        except psutil.AccessDenied as err:
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err

    def children(self, pid: int, threads: int) -> list[int]:
        try:
            proc = self._process(pid)
            return [] if proc is None else [child.pid for child in proc.children()]
        except psutil.NoSuchProcess:
            return []
        except psutil.AccessDenied as err:
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err

    def describe(self, pid: int) -> tuple[int, str] | None:
        try:
            proc = self._process(pid)
            return None if proc is None else (proc.ppid(), proc.name())
        except psutil.NoSuchProcess:
            return None  # collected since the walk saw it
        except psutil.AccessDenied as err:
            raise AccessDeniedError(f"may not read process {pid}: {err}") from err

    def retain(self, keep: set[int]) -> None:
        # Forget the dead, so a reused pid is read afresh.
        for pid in [p for p in self._procs if p not in keep]:
            del self._procs[pid]

    def close(self) -> None:
        self._procs.clear()


def _procfs_serves() -> bool:
    return _platform.can_use_proc_reader() and _platform.can_use_children_file()


def unavailable_reason() -> str | None:
    """Say why no backend can watch a process tree here, or None."""
    if _procfs_serves():
        return None
    try:
        psutil.Process(os.getpid()).children()
    except (psutil.Error, NotImplementedError, OSError) as err:
        return f"psutil cannot list children here ({type(err).__name__}: {err})"
    return None


def open_source() -> ProcessSource:
    """Return the best backend that works here; refuse with the reason if none.

    Raises ``UnsupportedError`` (exit 2): without a way to list children,
    every program would look clean.
    """
    if _procfs_serves():
        return ProcfsSource()
    reason = unavailable_reason()
    if reason is not None:
        raise UnsupportedError(f"cannot watch a process tree here: {reason}")
    return PsutilSource()
