"""Where each child process of a guarded test was started: the line of code
behind each leak (the pytest plugin's, #21).

CPython raises an audit event (PEP 578) in the process that starts a child:
``subprocess.Popen`` (also under asyncio's subprocesses), ``os.fork`` (also
under multiprocessing's fork start method), ``os.forkpty`` (``pty.fork``,
pexpect), ``os.posix_spawn`` (and ``posix_spawnp``) and ``os.system``
(docs/FACTS.md, "Audit events"). An audit hook records each, with the
stack at that moment, and later a leaked process is matched to the record
that started it:

- by pid, where the call's result can be had after the fact: the
  ``Popen`` object the event is raised in (a weak reference, read when
  matching), and for a fork the newest child of the forking thread, read
  from ``/proc/self/task/TID/children`` in an ``os.register_at_fork``
  callback (``after_in_parent`` runs in the thread that forked, before
  ``fork()`` returns, and the kernel appends each new child to the end of
  that list);
- else (``posix_spawn``, ``os.system``, a record whose object is gone) by
  the process's start time and name against the event's time and argv,
  which the message says, with how many records could have been it.

An audit hook cannot be removed, so one is added only when the plugin
guards a test, once per process, and does nothing outside a guarded test;
it costs every audit event of the process one set lookup (pytest raises
about eight per test). Recording a start costs the stack walk, a few
microseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
import time
import weakref
from typing import Any

from zombiewatch import _procfs
from zombiewatch._text import clip

EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.system"})
MAX_FRAMES = 8  # frames kept per start: enough to reach the test from a library
MAX_STARTS = 1000  # starts kept per test: a flood test must not grow memory
MAX_ARGS = 100  # characters of a command in the message

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")  # the resolution of a start time
_POPEN_CODE = subprocess.Popen._execute_child.__code__  # type: ignore[attr-defined]
_STDLIB = tuple(
    {os.path.join(p, "") for p in (sysconfig.get_paths()["stdlib"], os.path.dirname(os.__file__))}
)
_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
_SKIP, _LIBRARY, _USER, _RUNNER = 0, 1, 2, 3


class Start:
    """One process-starting call: what, where, when, and (once known) the pid."""

    __slots__ = ("boot_ns", "comm", "frames", "kind", "pid", "ref", "thread", "what")

    def __init__(
        self, kind: str, what: str, comm: str, frames: tuple[tuple[str, int, str, bool], ...]
    ) -> None:
        self.kind = kind
        self.what = what
        self.comm = comm
        # (path as shown, line, function, a library's), innermost first
        self.frames = frames
        self.boot_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)  # the clock of /proc start times
        self.thread = threading.current_thread().name
        self.pid = 0
        self.ref: weakref.ref[Any] | None = None

    def resolved_pid(self) -> int:
        if not self.pid and self.ref is not None:
            obj = self.ref()
            self.pid = getattr(obj, "pid", None) or 0
        return self.pid

    def where(self) -> str:
        """``tests/test_x.py:42 in test_y``, or for a library call the
        library's line and the user's line that led into it."""
        if not self.frames:
            return "an unknown place (no frame outside the standard library)"
        first = self.frames[0]
        text = f"{first[0]}:{first[1]} in {first[2]}"
        if first[3]:
            user = next((f for f in self.frames if not f[3]), None)
            if user is not None:
                text += f" ← {user[0]}:{user[1]} in {user[2]}"
        return text

    def text(self) -> str:
        """What the failure message says: where, what, and in which thread."""
        thread = "" if self.thread == "MainThread" else f", in thread {self.thread!r}"
        return f"{self.where()} ({self.what}{thread})"


def _what(event: str, args: tuple[Any, ...]) -> str:
    """The call, as the user would write it, bounded."""
    if event == "subprocess.Popen":
        argv = args[1]
        shown = argv if isinstance(argv, (str, bytes)) else list(argv)
        return clip(f"subprocess.Popen({shown!r})", MAX_ARGS)
    if event == "os.posix_spawn":
        return clip(f"os.posix_spawn({args[0]!r}, {list(args[1])!r})", MAX_ARGS)
    if event == "os.system":
        command = args[0]  # the audit event passes it encoded
        shown = os.fsdecode(command) if isinstance(command, bytes) else command
        return clip(f"os.system({shown!r})", MAX_ARGS)
    return f"{event}()"


def _comm(event: str, args: tuple[Any, ...]) -> str:
    """The name the kernel will give the started process (comm: the base
    name of the file it executes, 15 bytes), or "" for a fork, which is a
    copy of this process until it executes something."""
    if event == "os.system":
        return "sh"
    if event == "subprocess.Popen" or event == "os.posix_spawn":
        path = args[0]  # Popen's executable (argv[0] unless given), spawn's path
        if isinstance(path, (str, bytes, os.PathLike)):
            return os.path.basename(os.fsdecode(path))[:15]
    return ""


class Recorder:
    """Records the process-starting calls of the guarded test now running."""

    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.abspath(root), "")
        self.active = False
        self.pid = os.getpid()
        self.starts: list[Start] = []
        # code filename -> (_SKIP, _LIBRARY, _USER or _RUNNER; the path as shown)
        self._kinds: dict[str, tuple[int, str]] = {}
        self._forking: dict[int, Start] = {}  # thread ident -> its fork waiting for a pid

    def begin(self) -> None:
        """A guarded test begins: record from now on."""
        if self.starts:
            self.starts.clear()
            self._forking.clear()
        self.active = True

    def end(self) -> None:
        self.active = False

    # -- recording (in the audit hook) --------------------------------------------

    def record(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or len(self.starts) >= MAX_STARTS:
            return
        caller = sys._getframe(2)  # above this method and the hook
        start = Start(event, _what(event, args), _comm(event, args), self._frames(caller))
        if event == "subprocess.Popen" and caller.f_code is _POPEN_CODE:
            # Raised inside Popen._execute_child: its ``self`` gets the pid.
            start.ref = weakref.ref(caller.f_locals["self"])
        elif event in ("os.fork", "os.forkpty"):
            self._forking[threading.get_ident()] = start
        self.starts.append(start)

    def in_child(self) -> None:
        """In a forked child: it inherits the hook, but what it would record
        is lost with it; a pytest that forks a test (pytest-forked) begins
        again there."""
        self.active = False
        self.pid = os.getpid()
        self.starts = []
        self._forking = {}

    def after_fork(self) -> None:
        """In the parent, in the thread that forked: its newest child is the one."""
        start = self._forking.pop(threading.get_ident(), None) if self._forking else None
        if start is None:
            return
        try:
            with open(f"/proc/self/task/{threading.get_native_id()}/children", "rb") as f:
                children = f.read().split()
        except OSError:
            return  # matched by time, as a posix_spawn is
        if children:
            start.pid = int(children[-1])

    def _frames(self, frame: Any) -> tuple[tuple[str, int, str, bool], ...]:
        """The frames outside the standard library, pytest and this plugin,
        innermost first, up to the first of pytest's after the user's code."""
        kept: list[tuple[str, int, str, bool]] = []
        kinds = self._kinds
        while frame is not None and len(kept) < MAX_FRAMES:
            code = frame.f_code
            path = code.co_filename
            known = kinds.get(path)
            if known is None:
                kind = self._kind(path)
                known = kinds[path] = (kind, self._shown(path, kind))
            kind, shown = known
            if kind == _RUNNER and kept:
                break  # pytest called the test or fixture: what is below is pytest's
            if kind in (_USER, _LIBRARY):
                kept.append((shown, frame.f_lineno, code.co_name, kind == _LIBRARY))
            frame = frame.f_back
        return tuple(kept)

    def _kind(self, path: str) -> int:
        if path.startswith(_HERE):
            return _SKIP
        packages = "site-packages" in path or "dist-packages" in path
        if packages and any(f"{os.sep}{name}{os.sep}" in path for name in ("_pytest", "pluggy")):
            return _RUNNER
        if packages:
            return _LIBRARY
        if path.startswith(_STDLIB) or path.startswith("<"):
            return _SKIP
        return _USER

    def _shown(self, path: str, kind: int) -> str:
        if kind == _LIBRARY:
            for marker in ("site-packages", "dist-packages"):
                if marker in path:
                    return path.split(marker + os.sep, 1)[1]
        if path.startswith(self.root):
            return path[len(self.root) :]
        return path

    # -- matching -----------------------------------------------------------------

    def started(self, pid: int) -> str:
        """Say where ``pid`` (a process of the test's tree) was started: "" if
        no record matches."""
        starts = self.starts
        if not starts:
            return ""
        for start in starts:
            if start.resolved_pid() == pid:
                return start.text()
        stat = _procfs.read_stat(pid)
        if stat is None:
            return ""
        # Started after the call, at the tick's resolution: the call's record
        # is at most one tick later than the tick the start time shows.
        born = stat.start_ticks * _TICK_NS + _TICK_NS
        before = [s for s in starts if not s.resolved_pid() and s.boot_ns <= born]
        named = [s for s in before if s.comm and s.comm == stat.comm]
        if named:
            how = "the only call" if len(named) == 1 else f"the last of {len(named)} calls"
            return f"{named[-1].text()} [matched by name and start time, not pid: {how} that fits]"
        shells = [s for s in before if s.kind == "os.system"]
        if shells:
            return (
                f"{shells[-1].text()} [matched by start time only: started after that "
                f"shell, and no call of this test started a {stat.comm!r}]"
            )
        return ""


_RECORDER: Recorder | None = None


def recorder(root: str) -> Recorder:
    """The process's recorder, made (with its audit hook) on first use."""
    global _RECORDER
    if _RECORDER is None:
        rec = _RECORDER = Recorder(root)
        record = rec.record

        def hook(event: str, args: tuple[Any, ...], events: frozenset[str] = EVENTS) -> None:
            if event in events:
                record(event, args)

        sys.addaudithook(hook)
        os.register_at_fork(after_in_parent=rec.after_fork, after_in_child=rec.in_child)
    return _RECORDER
