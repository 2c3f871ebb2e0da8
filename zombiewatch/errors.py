"""Exit codes (the CI contract) and the exception tree.

``cli`` is the only module that turns these into a process exit status.
"""

from __future__ import annotations

import enum

import click


class ExitCode(enum.IntEnum):
    """Process exit status of every zombiewatch command (DESIGN.md)."""

    OK = 0  # measured, no zombie leaked
    ZOMBIES = 1  # zombies leaked, or with --check a mode missed its verdict
    USAGE = 2  # bad option, unknown or unavailable mode
    NOT_MEASURED = 3  # bind failed, access denied, internal error
    INTERRUPTED = 130  # Ctrl-C, SIGTERM


class ZombiewatchError(click.ClickException):
    """Something stopped the measurement: exit 3 with one line on stderr."""

    exit_code = ExitCode.NOT_MEASURED


class ServerStartError(ZombiewatchError):
    """The server under test did not start listening."""


class AccessDeniedError(ZombiewatchError):
    """The monitor may not read a process it must watch."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while a run was in progress."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
