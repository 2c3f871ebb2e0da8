"""The shell scripts shipped inside the package, under ``zombiewatch/scripts/``.

They live in the package, not beside it, so that every install (a wheel, a
git URL, a clone) has them: ``zombiewatch scripts --path`` says where, and
``--write DIR`` copies them where a CI job keeps its files. This module
only finds and copies them; what they do is in each script's header.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from zombiewatch.errors import writing

# Each shipped script and what it is for, in the order `zombiewatch scripts` lists them.
SCRIPTS = {
    "ci-zero-zombies.sh": "the CI gate: fail the job when your server leaks zombies under load",
    "flood.sh": "flood a line server with bash and coreutils only, checking every reply",
    "zombiewatch-command.sh": "sourced by the gate: finds zombiewatch, exits 3 if it does not run",
}
# Sourced, not run: it keeps the mode a sourced file has.
_SOURCED = frozenset({"zombiewatch-command.sh"})


def directory() -> Path:
    """The directory that holds the shipped scripts in this install."""
    return Path(__file__).resolve().parent / "scripts"


def write(dest: str) -> list[Path]:
    """Copy every shipped script into ``dest`` (made if missing); return the copies.

    Copies already there are replaced: a CI job that writes them on each
    run gets the scripts of the zombiewatch it installed.
    """
    target = Path(dest)
    written = []
    with writing(dest):
        target.mkdir(parents=True, exist_ok=True)
        for name in SCRIPTS:
            copy = target / name
            shutil.copyfile(directory() / name, copy)
            os.chmod(copy, 0o644 if name in _SOURCED else 0o755)
            written.append(copy)
    return written
