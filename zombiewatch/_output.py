"""What a measured program writes: passed on as it comes, its last lines kept.

``CommandOutput`` is where ``run``'s CMD writes its stdout and stderr (one
stream, in the order written, as ``2>&1`` would). By default a thread
reads it from a pipe and writes each line to our stderr after a
``name[pid]: `` prefix, so the report on our stdout stays parseable; with
a file (``run --cmd-output FILE``) the program writes there itself. Either
way memory stays bounded whatever it writes: 64 KiB read at a time, lines
cut at ``MAX_LINE`` bytes, and only the last ``TAIL_LINES`` lines kept for
the report.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import threading

from zombiewatch import _text
from zombiewatch.errors import ZombiewatchError

TAIL_LINES = 10  # lines of the program's output the report shows when it failed
MAX_LINE = 64 * 1024  # bytes: a longer line is passed on in pieces
TAIL_WIDTH = 300  # characters of each kept line
FINISH_TIMEOUT = 2.0  # seconds to read what the stopped program left in the pipe
_READ = 64 * 1024
_WAKE = 0.1  # seconds: how often the reader looks whether it was told to stop


class CommandOutput:
    """Where a program's stdout and stderr go, and what is kept of them."""

    def __init__(self, name: str, path: str | None = None) -> None:
        self.name = name
        self.path = path
        self.lost: OSError | None = None  # why passing on stopped (our stderr failed)
        self._tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._read_fd = -1
        if path is not None:
            # The program's own file: it writes there directly, at its own pace.
            try:
                self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as err:
                raise ZombiewatchError(f"cannot write {path}: {err.strerror}") from err
        else:
            self._read_fd, self._write_fd = os.pipe()
        self._prefix = b""

    def writer(self) -> int:
        """The descriptor to give the program as its stdout and stderr."""
        return self._write_fd

    def started(self, pid: int) -> None:
        """The program runs with its own copy of ``writer()``: drop ours."""
        os.close(self._write_fd)
        self._write_fd = -1
        self._prefix = f"{self.name}[{pid}]: ".encode(errors="replace")

    def pass_on(self) -> None:
        """Start passing the program's lines on (after ``started``).

        The reader thread starts before the load's process: it holds no
        lock and calls nothing of libc's but read/write/select, so the
        load's ``preexec_fn`` (one prctl) cannot deadlock on anything it
        holds (docs/DESIGN.md, Sessions).
        """
        if self.path is None and self._thread is None:
            self._thread = threading.Thread(
                target=self._pump, name="zombiewatch-output", daemon=True
            )
            self._thread.start()

    def finish(self, timeout: float = FINISH_TIMEOUT) -> None:
        """Pass on what is left, once the program's tree is stopped; then close.

        Waits up to ``timeout`` for the end of the stream: a process we
        could not stop (setuid) may hold the pipe open forever.
        """
        if self._write_fd >= 0:  # never started: the program did not run
            os.close(self._write_fd)
            self._write_fd = -1
        if self._read_fd >= 0:
            self.pass_on()  # if nothing did yet (an interrupt right after the start)
        if self._thread is not None:
            self._thread.join(timeout)
            self._stop.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                # Blocked writing to our stderr (a pipe nobody reads): it
                # keeps its descriptor, which must not be reused under it.
                return
            self._thread = None
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1
        if self.path is not None:
            self._read_tail_of_file()

    def tail(self) -> list[str]:
        """The last lines the program wrote (each cut to ``TAIL_WIDTH``)."""
        return [_text.clip(line.decode(errors="replace"), TAIL_WIDTH) for line in self._tail]

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the end of the stream (the program
        exited and nothing it started holds the pipe)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _pump(self) -> None:
        try:
            partial: bytes | None = b""
            while partial is not None and not self._stop.is_set():
                if select.select([self._read_fd], [], [], _WAKE)[0]:
                    partial = self._pass_on(partial, self._read_fd)
        except OSError as err:  # the pipe itself failed: nothing more to read
            self.lost = self.lost or err

    def _pass_on(self, partial: bytes, fd: int) -> bytes | None:
        """Read once, split into lines, write them prefixed, keep the last ones.

        Returns the unfinished last line, or None at the end of the stream
        (its unfinished line passed on as a line).
        """
        data = os.read(fd, _READ)
        if not data:
            if partial:
                self._emit([partial])
            return None
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        if len(partial) >= MAX_LINE:
            lines.append(partial)
            partial = b""
        if lines:
            self._emit(lines)
        return partial

    def _emit(self, lines: list[bytes]) -> None:
        self._tail.extend(lines[-TAIL_LINES:])
        if self.lost is not None:
            return  # our stderr failed once: read on, so the program never blocks
        prefix = self._prefix
        data = prefix + (b"\n" + prefix).join(lines) + b"\n"
        try:
            _write_all(2, data)
        except OSError as err:
            self.lost = err
            _text.output_lost("stderr", err)

    def _read_tail_of_file(self) -> None:
        try:
            with open(self.path or "", "rb") as f:
                if not os.path.isfile(self.path or ""):
                    return  # /dev/null, a FIFO: nothing to read back
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - TAIL_LINES * TAIL_WIDTH * 4))
                self._tail.extend(f.read().splitlines()[-TAIL_LINES:])
        except OSError:
            pass  # removed or unreadable since: no lines to show


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError as err:
            if err.errno == errno.EINTR:
                continue
            raise
