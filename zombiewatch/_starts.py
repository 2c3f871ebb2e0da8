"""Where each child process of a guarded test was started: the line of code
behind each leak (the pytest plugin's, #21).

The recorder catches each call that starts a process, with the stack at
that moment, and later a leaked process is matched to the record that
started it. It catches them without an audit hook (docs/FACTS.md,
"Catching process starts"): a hook is called for every audit event of the
process, and pytest raises about ten per test, so it cost every test of
the session ~2-5 µs whether it started anything or not. Instead, with the
first guarded test, it installs once:

- an ``os.register_at_fork(before=...)`` callback, for ``os.fork`` (also
  under multiprocessing's fork start method) and ``os.forkpty``
  (``pty.fork``, pexpect; told apart by a thin wrapper of ``os.forkpty``,
  the callback's caller);
- wrappers of ``subprocess.Popen._execute_child`` (also under asyncio's
  subprocesses), ``os.posix_spawn``, ``os.posix_spawnp`` and
  ``os.system``, which call the original with the same arguments and give
  back its result or its exception.

Outside a guarded test each costs one attribute test per process start,
and nothing at all per test. A later leak is matched:

- by pid, where the call's result can be had: the ``Popen`` object's pid
  once ``_execute_child`` returns, and for a fork the newest child of the
  forking thread, read from ``/proc/self/task/TID/children`` in an
  ``after_in_parent`` callback (it runs in the thread that forked, before
  ``fork()`` returns, and the kernel appends each new child to the end of
  that list);
- else (``posix_spawn``, ``os.system``, a ``Popen`` that raised) by the
  process's start time and name against the call's time and argv, which
  the message says, with how many records could have been it.

A module that took its own reference to one of these functions before the
first guarded test (``from os import system``) calls the original, and its
starts are not recorded. Recording a start costs the stack walk, a few
microseconds.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from zombiewatch import _procfs
from zombiewatch._text import clip

MAX_FRAMES = 8  # frames kept per start: enough to reach the test from a library
MAX_STARTS = 1000  # starts kept per test: a flood test must not grow memory
MAX_ARGS = 100  # characters of a command in the message

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")  # the resolution of a start time
# The standard library's own code objects, as they were before any wrapper:
# a fork the register_at_fork callback sees from Popen's (a preexec_fn
# forks through it) and a posix_spawn from Popen's posix_spawn path are
# that Popen's, which its own wrapper records.
_POPEN_CODE = subprocess.Popen._execute_child.__code__  # type: ignore[attr-defined]
# Popen calls ``_execute_child(args, executable, ..., shell, ...)`` with
# positional arguments: where ``shell`` is after ``args``.
_SHELL_AT = _POPEN_CODE.co_varnames.index("shell") - 2
_POPEN_SPAWN_CODE = getattr(getattr(subprocess.Popen, "_posix_spawn", None), "__code__", None)
_STDLIB = tuple(
    {os.path.join(p, "") for p in (sysconfig.get_paths()["stdlib"], os.path.dirname(os.__file__))}
)
_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
_SKIP, _LIBRARY, _USER, _RUNNER = 0, 1, 2, 3


class Start:
    """One process-starting call: what, where, when, and (once known) the pid."""

    __slots__ = ("boot_ns", "comm", "frames", "kind", "pid", "thread", "what")

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
        self.pid = 0  # set when the call returns it (Popen) or after a fork

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


def _comm(path: object) -> str:
    """The name the kernel gives a process that executes ``path`` (comm: its
    base name, 15 bytes)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.path.basename(os.fsdecode(path))[:15]
    return ""


def _popen_argv(args: Any, executable: Any, shell: bool) -> tuple[list[Any], Any]:
    """(argv, executable) as ``Popen._execute_child`` makes them from its
    arguments before it starts the child (what its audit event shows)."""
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    if shell:
        argv = ["/bin/sh", "-c", *argv]
        if executable:
            argv[0] = executable
    return argv, argv[0] if executable is None else executable


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
        self.forkpty_code: Any = None  # the os.forkpty wrapper's, set by _install

    def begin(self) -> None:
        """A guarded test begins: record from now on."""
        if self.starts:
            self.starts.clear()
            self._forking.clear()
        self.active = True

    def end(self) -> None:
        self.active = False

    # -- recording (in the wrappers, only while active) ---------------------------

    def record(self, kind: str, what: str, comm: str, frame: FrameType | None) -> Start | None:
        """Record a start called from ``frame`` (the caller of the stdlib's function)."""
        if len(self.starts) >= MAX_STARTS:
            return None
        start = Start(kind, what, comm, self._frames(frame))
        self.starts.append(start)
        return start

    def popen(self, args: Any, rest: tuple[Any, ...], frame: FrameType | None) -> Start | None:
        """A ``Popen._execute_child(self, args, *rest)`` call about to start its child."""
        executable = rest[0] if rest else None
        shell = bool(rest[_SHELL_AT]) if len(rest) > _SHELL_AT else False
        try:
            argv, executable = _popen_argv(args, executable, shell)
        except Exception:
            return None  # arguments Popen refuses: its own error says so
        what = clip(f"subprocess.Popen({argv!r})", MAX_ARGS)
        return self.record("subprocess.Popen", what, _comm(executable), frame)

    def spawn(self, args: tuple[Any, ...], frame: FrameType | None) -> None:
        """An ``os.posix_spawn`` or ``os.posix_spawnp`` call."""
        if frame is not None and frame.f_code is _POPEN_SPAWN_CODE:
            return  # Popen's own: its record has the pid
        if len(args) < 2:
            return  # refused by the call itself
        path, argv = args[0], args[1]
        shown = list(argv) if isinstance(argv, (list, tuple)) else argv
        what = clip(f"os.posix_spawn({path!r}, {shown!r})", MAX_ARGS)
        self.record("os.posix_spawn", what, _comm(path), frame)

    def system(self, command: Any, frame: FrameType | None) -> None:
        """An ``os.system`` call: its shell is ``sh``."""
        try:
            shown = os.fsdecode(command)
        except TypeError:
            return  # refused by the call itself
        self.record("os.system", clip(f"os.system({shown!r})", MAX_ARGS), "sh", frame)

    def before_fork(self) -> None:
        """In the parent, in the thread about to fork (``os.fork``, ``os.forkpty``)."""
        if not self.active:
            return
        frame = sys._getframe(0).f_back  # who called os.fork: C has no frame
        kind = "os.fork"
        if frame is not None:
            if frame.f_code is _POPEN_CODE:
                return  # a Popen with preexec_fn forks through here: its record is made
            if frame.f_code is self.forkpty_code:
                kind, frame = "os.forkpty", frame.f_back
        start = self.record(kind, f"{kind}()", "", frame)
        if start is not None:
            self._forking[threading.get_ident()] = start

    def in_child(self) -> None:
        """In a forked child: it inherits the wrappers, but what it would
        record is lost with it; a pytest that forks a test (pytest-forked)
        begins again there."""
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
            if start.pid == pid:
                return start.text()
        stat = _procfs.read_stat(pid)
        if stat is None:
            return ""
        # Started after the call, at the tick's resolution: the call's record
        # is at most one tick later than the tick the start time shows.
        born = stat.start_ticks * _TICK_NS + _TICK_NS
        before = [s for s in starts if not s.pid and s.boot_ns <= born]
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
    """The process's recorder, made (with its fork callbacks and wrappers) on
    first use. Neither can be removed safely once the session's code may
    hold them, so they stay for the life of the process, idle outside a
    guarded test."""
    global _RECORDER
    if _RECORDER is None:
        rec = _RECORDER = Recorder(root)
        _install(rec)
        os.register_at_fork(
            before=rec.before_fork, after_in_parent=rec.after_fork, after_in_child=rec.in_child
        )
    return _RECORDER


def _install(rec: Recorder) -> None:
    """Put the wrappers in place of the standard library's functions."""
    subprocess.Popen._execute_child = wrap_execute_child(  # type: ignore[attr-defined]
        rec,
        subprocess.Popen._execute_child,  # type: ignore[attr-defined]
    )
    for name in ("posix_spawn", "posix_spawnp"):
        spawn = getattr(os, name, None)
        if spawn is not None:  # else not on this platform
            setattr(os, name, wrap_spawn(rec, spawn))
    os.system = wrap_system(rec, os.system)  # type: ignore[assignment]
    forkpty = getattr(os, "forkpty", None)
    if forkpty is not None:
        # Wrapped only so that the fork callback, which sees its caller,
        # can tell os.forkpty from os.fork.
        @functools.wraps(forkpty)
        def _forkpty() -> tuple[int, int]:
            return forkpty()  # type: ignore[no-any-return]

        os.forkpty = _forkpty
        rec.forkpty_code = _forkpty.__code__  # type: ignore[attr-defined]


# Each wrapper passes its arguments, result and exception through unchanged;
# outside a guarded test it only tests ``rec.active``.


def wrap_execute_child(rec: Recorder, execute_child: Callable[..., Any]) -> Callable[..., Any]:
    """``Popen._execute_child``: the record gets the pid once it returns."""

    @functools.wraps(execute_child)
    def _execute_child(self: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        if not rec.active:
            return execute_child(self, args, *rest, **kwargs)
        if not isinstance(args, (str, bytes, os.PathLike, list, tuple)):
            args = list(args)  # an iterator is read once: the original reads this copy
        start = rec.popen(args, rest, sys._getframe(1))
        try:
            result = execute_child(self, args, *rest, **kwargs)
        except BaseException:
            # No child outlives a failed start (Popen collects it): no record.
            if start is not None and start in rec.starts:
                rec.starts.remove(start)
            raise
        if start is not None:
            start.pid = self.pid
        return result

    return _execute_child


def wrap_spawn(rec: Recorder, spawn: Callable[..., int]) -> Callable[..., int]:
    """``os.posix_spawn``, ``os.posix_spawnp``."""

    @functools.wraps(spawn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        if rec.active:
            rec.spawn(args, sys._getframe(1))
        return spawn(*args, **kwargs)

    return wrapper


def wrap_system(rec: Recorder, system: Callable[[Any], int]) -> Callable[[Any], int]:
    """``os.system``, whose one argument may also be given by name."""

    @functools.wraps(system)
    def _system(command: Any) -> int:
        if rec.active:
            rec.system(command, sys._getframe(1))
        return system(command)

    return _system
