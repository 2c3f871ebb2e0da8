"""Short names for what a run measures: the ``--live`` title and the JUnit
testcase name.

A name must be short (a title line on a terminal) and, for JUnit, stable
from one run to the next: CI systems keep a testcase's history by its
name, so a port, a temporary path or a pid in it would start a new
history each run. The program's name is what stays; ``--name`` sets one
where it does not say enough.
"""

from __future__ import annotations

import os
import re

# Interpreters whose program is their script (or ``-m module``): the
# interpreter's name alone would name every Python server alike.
_INTERPRETER = re.compile(
    r"(python|pypy|node|nodejs|ruby|perl|php|bash|sh|dash|zsh|ksh|deno|bun)[0-9.]*"
)


def server_title(mode: str) -> str:
    """The built-in server, as people call it: "zombiewatch server, mode sigchld"."""
    return f"zombiewatch server, mode {mode}"


def program_name(argv: list[str]) -> str:
    """The program ``argv`` runs, without its arguments: ``my-server``,
    ``python3 server.py``, ``python3 -m app``.

    Arguments are left out on purpose: a port, a temporary directory or a
    config path change from run to run, and the name must not.
    """
    if not argv:
        return "?"
    program = os.path.basename(argv[0]) or argv[0]
    if not _INTERPRETER.fullmatch(program):
        return program
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-m", "-c", "-e"):
            # -m names a module; -c and -e give code, too long for a name.
            module = next(args, "") if arg == "-m" else ""
            return f"{program} {arg} {module}".rstrip()
        if not arg.startswith("-"):
            return f"{program} {os.path.basename(arg) or arg}"
    return program
