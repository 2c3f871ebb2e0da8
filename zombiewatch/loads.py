"""The load driven while the monitor watches: a subprocess of the runner.

Two kinds: ``FloodLoad``, the built-in flooder (``zombiewatch.flood`` as
its own process), whose JSON result and progress count are read back; and
``CommandLoad``, the user's ``--load`` shell command, whose exit status is
reported apart from the zombie verdict. Both run in their own session and
are stopped with their process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from zombiewatch import _proctl
from zombiewatch import flood as flooder
from zombiewatch._backoff import poll_until
from zombiewatch.errors import ZombiewatchError
from zombiewatch.targets import STOP_GRACE, OrphanCollector, child_exited


class Load:
    """A load process of ours, in its own session, stopped with its group."""

    def __init__(
        self,
        argv: list[str],
        collector: OrphanCollector,
        stdout: int | IO[bytes],
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self._interrupted = False
        try:
            # Its own session: a Ctrl-C at the terminal reaches the runner
            # alone, which then stops the load as part of its cleanup.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                start_new_session=True,
                preexec_fn=_proctl.die_with_parent_preexec(signal.SIGKILL),
                pass_fds=pass_fds,
            )
        except OSError as err:
            raise ZombiewatchError(f"cannot run the load {argv[0]}: {err.strerror}") from err
        self._collector = collector
        collector.keep.add(self.proc.pid)

    def progress(self) -> int | None:
        """Connections finished so far, if the load says."""
        return None

    def done(self) -> bool:
        """True once the load has finished by itself. It is left unreaped
        until ``stop()``, so its pid (its group's id) stays its own."""
        return child_exited(self.proc.pid)

    def _signal_group(self, sig: int) -> None:
        # Unreaped, the load's pid (its group's id) cannot have been reused.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def interrupt(self) -> None:
        """Ask the load to end now: SIGTERM to its process group (a
        ``--load`` shell and what it started). The flooder then stops
        connecting and still writes what it did. Sent once: a second
        SIGTERM must not cut the flooder's report short."""
        if not self._interrupted:
            self._interrupted = True
            self._signal_group(signal.SIGTERM)

    def stop(self) -> None:
        """End the load and whatever it left in its process group, and
        collect it: SIGTERM (once), up to ``STOP_GRACE`` seconds for the
        load itself to exit, then SIGKILL to what is left of the group.
        A load that ended by itself leaves at most background jobs there."""
        self.interrupt()
        poll_until(lambda: child_exited(self.proc.pid), STOP_GRACE)
        self._signal_group(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        """Forget the load (after ``stop()``)."""
        self._collector.keep.discard(self.proc.pid)

    def flood_result(self, stopped_early: bool) -> dict[str, Any]:
        """What the load reports of its connections (after ``stop()``); none here."""
        return {}

    def status(self) -> int | None:
        """The exit status reported beside the verdict (after ``stop()``); none here."""
        return None


class CommandLoad(Load):
    """The user's ``--load`` command line, run by a shell."""

    def __init__(self, command: str, collector: OrphanCollector) -> None:
        # The user wrote a shell command line: a shell runs it. What it
        # prints goes to our stderr: our stdout carries only the report.
        super().__init__(["/bin/sh", "-c", command], collector, stdout=sys.stderr.fileno())

    def status(self) -> int | None:
        """The command's exit status, reported apart from the zombie verdict."""
        return self.proc.returncode


class FloodLoad(Load):
    """The built-in flooder, in its own process so it has a core of its own.

    It prints its JSON result to a file read back after ``stop()`` and,
    with ``progress``, writes its count of finished connections to a pipe
    (the contract is ``flood.run``'s).
    """

    def __init__(self, config: flooder.Config, collector: OrphanCollector, progress: bool) -> None:
        # The flooder stops itself at its deadline; this bound only catches a
        # flooder that hangs anyway.
        self.deadline = time.monotonic() + config.bound() + 30
        self._count: int | None = None
        self._progress_r: int | None = None
        progress_w = None
        if progress:
            self._progress_r, progress_w = os.pipe()
            os.set_blocking(self._progress_r, False)
        self._out = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        try:
            super().__init__(
                flooder.command(config, progress_w),
                collector,
                stdout=self._out,
                pass_fds=() if progress_w is None else (progress_w,),
            )
        except ZombiewatchError:
            self._out.close()
            if self._progress_r is not None:
                os.close(self._progress_r)
            raise
        finally:
            if progress_w is not None:
                os.close(progress_w)  # the flooder's copy is the only writer now

    def progress(self) -> int | None:
        """Take the latest count the flooder wrote to its progress pipe."""
        if self._progress_r is not None:
            try:
                data = os.read(self._progress_r, 65536)
            except BlockingIOError:
                data = b""  # EAGAIN: nothing new since the last look
            counts = data.split()
            if counts:
                self._count = int(counts[-1])
        return self._count

    def done(self) -> bool:
        if super().done():
            return True
        if time.monotonic() > self.deadline:
            raise ZombiewatchError("the flooder overran its own deadline and was stopped")
        return False

    def close(self) -> None:
        super().close()
        self._out.close()
        if self._progress_r is not None:
            os.close(self._progress_r)
            self._progress_r = None

    def flood_result(self, stopped_early: bool) -> dict[str, Any]:
        """The flooder's JSON result (after ``stop()``)."""
        if stopped_early and self.proc.returncode < 0:
            # A flooder killed by a signal when stopped early (before its
            # SIGTERM handler was set, or past the grace) left no result.
            return {}
        if self.proc.returncode not in flooder.REPORTED:
            raise ZombiewatchError(f"the flooder failed (status {self.proc.returncode})")
        self._out.seek(0)
        result: dict[str, Any] = json.loads(self._out.read())
        return result
