"""Registry of reaping modes: ``register()``, ``get()``, ``names()``.

Each mode is one module below, imported explicitly so the order of
``names()`` is the order of the table in docs/DESIGN.md, Reaping modes.
Adding a mode is one new module and one import line here; the CLI and the
tests read the registry.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zombiewatch.modes.base import Reaper

_REGISTRY: dict[str, type[Reaper]] = {}


def register(cls: type[Reaper]) -> type[Reaper]:
    """Class decorator: make ``cls`` selectable as ``--mode cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"mode {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Reaper]:
    """Return the mode class called ``name``; raise ``KeyError`` if unknown."""
    return _REGISTRY[name]


def names() -> list[str]:
    """Return every registered mode name, available here or not."""
    return list(_REGISTRY)


from zombiewatch.modes import (  # the modules call register()
    none,
    wait,
    poll,
    sigchld,
    sigchld_once,
    ignore,
    double_fork,
    pidfd,
    reaper_thread,
    thread,
)

__all__ = ["get", "names", "register"]
