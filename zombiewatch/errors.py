"""Exit codes (the CI contract) and the exception tree, with ``writing``,
which turns a failed write of an output file into one error line.

``cli`` is the only module that turns these into a process exit status.
The exceptions have no click base class, so the server and the monitor,
which raise them, never import click (docs/FACTS.md, "Fork cost").
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator


class ExitCode(enum.IntEnum):
    """Process exit status of every zombiewatch command (docs/DESIGN.md, Exit codes)."""

    OK = 0  # measured, no zombie leaked
    ZOMBIES = 1  # zombies leaked, or with --check a mode missed its verdict
    USAGE = 2  # bad option, unknown or unavailable mode
    NOT_MEASURED = 3  # bind failed, access denied, internal error
    LOAD_FAILED = 4  # measured, but the load did not run as asked (a "load" or "target" rule)
    INTERRUPTED = 130  # Ctrl-C, SIGTERM


class ZombiewatchError(Exception):
    """Something stopped the measurement: exit 3 with one line on stderr."""

    exit_code: ExitCode = ExitCode.NOT_MEASURED


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn an ``OSError`` in the block into one line: cannot write PATH: why."""
    try:
        yield
    except OSError as err:
        raise ZombiewatchError(f"cannot write {path}: {err.strerror}") from err


class UnsupportedError(ZombiewatchError):
    """Nothing here can observe what was asked for: a usage error (exit 2)."""

    exit_code = ExitCode.USAGE


class ZombieTargetError(ZombiewatchError):
    """The process to watch is a zombie already: a zombie found (exit 1)."""

    exit_code = ExitCode.ZOMBIES


class ServerStartError(ZombiewatchError):
    """The server under test did not start listening."""


class AccessDeniedError(ZombiewatchError):
    """The monitor may not read a process it must watch."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while a run was in progress."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
