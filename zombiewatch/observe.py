"""Choose how to watch a tree: kernel events where they work, else sampling.

``--observe auto|events|sample`` lands here. ``events`` where the
connector cannot be had is exit 3 with the reason; ``auto`` falls back to
the sampler and says so once. Every report names the method that ran
(``MonitorStats.method``), so a user knows what the lifetimes mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from zombiewatch import _cnproc, _platform
from zombiewatch.errors import ZombiewatchError
from zombiewatch.events import EventMonitor
from zombiewatch.monitor import Monitor, TreeWatcher

OBSERVE_METHODS = ("auto", "events", "sample")
_said: set[str] = set()  # fallbacks already logged: each is said once per process


def _events_prerequisite_missing() -> str | None:
    if not _platform.can_use_pidfd():
        return "watching reaps needs pidfd_open (Linux 5.3+)"
    if not _platform.can_use_proc_reader():
        return "seeding the tree needs /proc"
    return None


def events_unavailable_reason() -> str | None:
    """Say why kernel events cannot observe a tree here, or None where they can."""
    return _events_prerequisite_missing() or _cnproc.unavailable_reason()


def listen_early(observe: str) -> _cnproc.Connector | None:
    """Listen to kernel events now, before the program to watch starts, when
    ``observe`` may use them (None where it may not or they cannot be had:
    ``open_monitor`` then says why). Give it to ``open_monitor``, which
    owns it from then on; close it if no watcher is made."""
    if observe == "sample" or _events_prerequisite_missing() is not None:
        return None
    try:
        return _cnproc.Connector()
    except _cnproc.ConnectorError:
        return None


def open_monitor(
    root: int,
    adopters: Iterable[int] = (),
    interval: float = 0.01,
    observe: str = "auto",
    log: Callable[[str], None] | None = None,
    connector: _cnproc.Connector | None = None,
) -> TreeWatcher:
    """Return a watcher of ``root``'s tree that observes as ``observe`` says.

    ``connector``, from ``listen_early`` before ``root`` started, gives the
    event watcher the tree's whole history.

    ``events``: from kernel events, or ``ZombiewatchError`` (exit 3) with
    the reason where they cannot be had. ``sample``: the sampler. ``auto``:
    events where they work, else the sampler, said once through ``log``.
    """
    if observe not in OBSERVE_METHODS:
        raise ValueError(f"observe must be one of {OBSERVE_METHODS}, not {observe!r}")
    if observe != "sample":
        reason = _events_prerequisite_missing()
        if reason is None:
            try:
                history = connector is not None
                return EventMonitor(root, adopters, interval, connector, history=history)
            except _cnproc.ConnectorError as err:
                reason = err.strerror or str(err)
        if observe == "events":
            raise ZombiewatchError(f"--observe events: {reason}")
        if log is not None and reason not in _said:
            _said.add(reason)
            log(f"kernel events unavailable ({reason}); sampling every {interval * 1000:g} ms")
    return Monitor(root, adopters, interval)
