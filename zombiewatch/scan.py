"""Every zombie on the machine, grouped by the process that holds it, and the
signals that may clear them: what ``zombiewatch scan`` does, start to end.

Owns the scan (one cheap pass over every process, then psutil for the few
parents that hold zombies), the rules for which processes zombiewatch may
signal, the polls that tell what a signal changed, and ``run``, the
command's sequence: scan, then with ``--kill-parents`` plan and confirm
before any signal, nudge, kill, summary. It does not
parse options, ask questions or exit: ``cli`` does, and hands ``run`` the
question to ask as a callback. The records and their text are
``scan_report``'s; direct ``/proc`` reads are ``_procfs``'s and the
signalling itself ``_proctl``'s.

A zombie has exited; only its parent can collect it, by calling ``wait``.
The harmless nudge is SIGCHLD to that parent: a parent that reaps in a
SIGCHLD handler but missed a signal (signals coalesce, or it installed the
handler after its children died) collects them; one that never waits
ignores it. Killing the parent hands its zombies to PID 1 or the nearest
subreaper, which should collect them, but it kills the parent: a shell, a
terminal, a server. So that needs ``--kill-parents``, is listed first and
confirmed before anything is sent, the nudge included, and is never sent
to PID 1, kernel threads or this process's ancestors. Other users'
processes are signalled only by root, and only with ``--all-users``: a
scan run as root sees every user's processes, and one mistyped command
must not reach them all.
"""

from __future__ import annotations

import os
import pwd
import signal
import time
from collections.abc import Callable, Iterable

import psutil

from zombiewatch import _defaults, _platform, _procfs, _proctl
from zombiewatch._backoff import poll_until
from zombiewatch.errors import AccessDeniedError
from zombiewatch.scan_report import (
    Filters,
    Outcome,
    ScannedZombie,
    ScanResult,
    SignalRound,
    ZombieParent,
    render_plan,
    render_round,
    render_scan,
    render_summary,
)

# -- scanning -------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Say why a scan cannot run here, or None."""
    return None if _platform.LINUX else "scan reads /proc, which only Linux has"


def blind_spot() -> str | None:
    """Say which zombies a scan cannot see here, or None when it sees them all."""
    if _platform.proc_hides_processes() and os.geteuid() != 0:
        return "/proc hides other users' processes here (hidepid): only yours are scanned"
    return None


def resolve_user(name: str) -> int:
    """Return the uid of a user name or number; raise LookupError if unknown.

    A number is taken as is: processes may run under uids that have no
    entry in ``/etc/passwd`` (containers, ``setpriv``).
    """
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise LookupError(f"no such user: {name!r}") from None


def _user_name(uid: int | None) -> str:
    if uid is None:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def protection(
    stat: _procfs.ProcStat | None, uid: int | None, me: set[int], all_users: bool = False
) -> str | None:
    """Say why zombiewatch must never signal this parent, or return None.

    ``me`` is this process and its ancestors: signalling them could end the
    user's own shell or terminal (zps's default did). Ownership is by real
    uid, as kill(2) checks it; root may signal other users' processes, but
    only when asked to with ``all_users``.
    """
    if stat is None:
        return None  # gone: nothing to protect, the signal will find nothing
    if stat.pid == 1:
        return "PID 1 is never signalled"
    if stat.kernel_thread:
        return "a kernel thread"
    if stat.pid == os.getpid():
        return "this scan itself"
    if stat.pid in me:
        return "an ancestor of this scan (your shell or terminal?)"
    if uid != os.getuid():
        owner = f"owned by {_user_name(uid)}, not by you ({_user_name(os.getuid())})"
        if os.geteuid() != 0:
            return owner
        if not all_users:
            return f"{owner}; --all-users to signal it"
    return None


def _describe(ppid: int, me: set[int], all_users: bool = False) -> ZombieParent:
    """Read a zombie holder's details: psutil for the few that hold zombies."""
    if ppid == 0:
        # In a PID namespace (a container), a process whose parent lives
        # outside it (``docker exec``, ``nsenter``) shows parent pid 0.
        outside = "its parent is outside this PID namespace"
        return ZombieParent(0, 0, None, "?", "?", [], protected=outside)
    stat = _procfs.read_stat(ppid)
    uid: int | None = None
    name = stat.comm if stat is not None else "?"
    cmdline: list[str] = []
    try:
        proc = psutil.Process(ppid)
        with proc.oneshot():
            uid = proc.uids().real
            name = proc.name()
            cmdline = proc.cmdline()
    except psutil.NoSuchProcess:
        stat = None  # it exited after the scan; its zombies went to an adopter
    except psutil.AccessDenied:
        cmdline = []  # the name from stat stands in for it
    return ZombieParent(
        pid=ppid,
        start_ticks=stat.start_ticks if stat is not None else 0,
        uid=uid,
        user=_user_name(uid),
        name=name,
        cmdline=cmdline,
        protected=protection(stat, uid, me, all_users),
    )


def scan(filters: Filters | None = None, all_users: bool = False) -> ScanResult:
    """Find every zombie on the machine and group the matching ones by parent.

    Parents are sorted by zombie count, most first (then by pid). With
    ``all_users`` (and root), other users' parents are not protected.
    """
    filters = filters or Filters()
    started = time.monotonic()
    found, processes = _procfs.scan_zombies()
    by_parent: dict[int, list[ScannedZombie]] = {}
    for stat in found:
        if filters.parents and stat.ppid not in filters.parents:
            continue
        zombie = ScannedZombie(
            pid=stat.pid,
            name=stat.comm,
            start_ticks=stat.start_ticks,
            age_max=_procfs.seconds_since_start(stat.start_ticks),
        )
        by_parent.setdefault(stat.ppid, []).append(zombie)
    me = _procfs.ancestors(os.getpid())
    parents = []
    for ppid, zombies in by_parent.items():
        if len(zombies) < filters.min_count:
            continue
        parent = _describe(ppid, me, all_users)
        if filters.uid is not None and parent.uid != filters.uid:
            continue
        parent.zombies = sorted(zombies, key=lambda z: z.pid)
        parents.append(parent)
    parents.sort(key=lambda p: (-p.count, p.pid))
    return ScanResult(
        parents=parents,
        total_zombies=len(found),
        processes=processes,
        scan_time=time.monotonic() - started,
        filters=filters,
    )


# -- signalling -----------------------------------------------------------------


def _still_zombie(zombie: ScannedZombie) -> _procfs.ProcStat | None:
    """Its stat if ``zombie`` is still uncollected (wherever it is held), else None."""
    stat = _procfs.read_stat(zombie.pid)
    if stat is None or stat.start_ticks != zombie.start_ticks or stat.state != "Z":
        return None  # collected; a process with the same pid is a new one
    return stat


def _exited(parent: ZombieParent) -> bool:
    stat = _procfs.read_stat(parent.pid)
    # A parent that died is a zombie itself until its own parent collects it.
    return stat is None or stat.start_ticks != parent.start_ticks or stat.state in ("Z", "X")


def _poll(done: Callable[[], bool], wait: float) -> float:
    """Poll ``done`` until it is true or ``wait`` seconds pass; return the seconds waited.

    A parent with a SIGCHLD handler collects its zombies within
    milliseconds, and the backoff's first looks come that fast.
    """
    started = time.monotonic()
    poll_until(done, wait)
    return time.monotonic() - started


def _send(
    parents: Iterable[ZombieParent],
    sig: signal.Signals,
    wait: float,
    spared: Iterable[Outcome] = (),
) -> SignalRound:
    """Send ``sig`` to each parent not protected, then poll until its zombies
    are collected (and, for a signal other than SIGCHLD, until it exited) or
    ``wait`` seconds pass. ``spared`` parents are reported, not signalled."""
    round_ = SignalRound(signal=sig.name, wait=wait, outcomes=list(spared))
    for parent in parents:
        outcome = Outcome(parent)
        round_.outcomes.append(outcome)
        if parent.protected is not None:
            outcome.why_not = parent.protected
            continue
        try:
            outcome.signalled = _proctl.send_signal(parent.pid, parent.start_ticks, sig)
        except (PermissionError, AccessDeniedError):
            outcome.why_not = "permission denied"
            continue
        if not outcome.signalled:
            outcome.why_not = "it exited before the signal"
    pending = round_.sent
    kill = sig != signal.SIGCHLD

    def settled() -> bool:
        for outcome in pending:
            if kill and not _exited(outcome.parent):
                return False
            if any(_still_zombie(z) for z in outcome.parent.zombies):
                return False
        return True

    round_.waited = _poll(settled, wait) if pending else 0.0
    for outcome in round_.outcomes:
        held_by = set()
        for zombie in outcome.parent.zombies:
            stat = _still_zombie(zombie)
            if stat is None:
                outcome.collected.append(zombie.pid)
            else:
                outcome.remaining.append(zombie.pid)
                held_by.add(stat.ppid)
        outcome.held_by = sorted(held_by)
        if outcome.signalled and kill:
            outcome.parent_exited = _exited(outcome.parent)
    return round_


def nudge(result: ScanResult, wait: float = _defaults.SCAN_WAIT) -> SignalRound:
    """Send SIGCHLD to each zombie's parent and see which collected them.

    SIGCHLD's default action is to do nothing, so a parent without a
    handler is not harmed. Protected parents (see ``protection``) are
    skipped and listed with the reason.
    """
    result.nudge = _send(result.parents, signal.SIGCHLD, wait)
    result.remaining = count_remaining(result)
    return result.nudge


def kill_plan(result: ScanResult) -> tuple[list[ZombieParent], list[Outcome]]:
    """Split the parents still holding zombies into those a kill may signal
    and the rest, which are listed with the reason they are spared."""
    targets: list[ZombieParent] = []
    spared: list[Outcome] = []
    holding = None
    if result.nudge is not None:
        holding = {o.parent.pid for o in result.nudge.outcomes if o.remaining}
    for parent in result.parents:
        if holding is not None and parent.pid not in holding:
            continue  # the nudge was enough
        if parent.protected is not None:
            spared.append(Outcome(parent, why_not=parent.protected))
        elif _exited(parent):
            spared.append(Outcome(parent, why_not="it exited after the scan"))
        else:
            targets.append(parent)
    return targets, spared


def kill_parents(
    result: ScanResult,
    targets: list[ZombieParent],
    spared: list[Outcome],
    sig: signal.Signals,
    wait: float = _defaults.SCAN_WAIT,
) -> SignalRound:
    """Send ``sig`` to ``targets`` (from ``kill_plan``) and see what became of
    them and their zombies, which pass to PID 1 or the nearest subreaper."""
    result.kill = _send(targets, sig, wait, spared)
    result.remaining = count_remaining(result)
    return result.kill


def decline(
    result: ScanResult, targets: list[ZombieParent], spared: list[Outcome], sig: signal.Signals
) -> SignalRound:
    """Record that the user said no to the plan: nothing is signalled."""
    outcomes = [Outcome(p, why_not="you said no") for p in targets]
    result.kill = SignalRound(
        signal=sig.name, wait=0.0, outcomes=[*outcomes, *spared], confirmed=False
    )
    for outcome in result.kill.outcomes:
        outcome.remaining = [z.pid for z in outcome.parent.zombies if _still_zombie(z)]
        outcome.collected = [
            z.pid for z in outcome.parent.zombies if z.pid not in outcome.remaining
        ]
    result.remaining = count_remaining(result)
    return result.kill


def count_remaining(result: ScanResult) -> int:
    """How many of the zombies the scan found are still zombies."""
    return sum(1 for p in result.parents for z in p.zombies if _still_zombie(z))


def parse_signal(value: str) -> signal.Signals:
    """Return the signal named ``value`` (TERM, SIGTERM, term, 15); raise ValueError."""
    text = value.strip().upper()
    if not text.isdigit() and not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals(int(text)) if text.isdigit() else signal.Signals[text]
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal: {value!r}") from None


# -- the command's sequence ---------------------------------------------------------


def run(
    filters: Filters,
    *,
    reap: bool,
    kill: signal.Signals | None,
    wait: float,
    confirm: Callable[[str], bool],
    show: Callable[[str], None],
    table: bool = True,
    width: int | None = None,
    all_users: bool = False,
) -> ScanResult:
    """Run ``zombiewatch scan``: scan; with ``kill``, show the plan and ask
    ``confirm`` before any signal (a no records the refusal and sends
    nothing); with ``reap`` or a confirmed ``kill``, nudge each parent with
    SIGCHLD; with ``kill``, then send ``kill`` to the parents still holding
    zombies; then the summary. ``all_users`` lets root signal other users'
    processes.

    ``show`` gets each piece of text for people as soon as it is known, the
    plan before the question: the scan's table (only with ``table``; cut
    to ``width``), what each signal did, the closing line. ``confirm``
    gets the question and is not asked when there is nothing to signal.
    The returned result carries the JSON and the exit code.
    """

    def say(text: str) -> None:
        if text:
            show(text)

    reaping = reap or kill is not None
    result = scan(filters, all_users)
    if table:
        say(render_scan(result, reaping=reaping, width=width))
    if not reaping or not result.parents:
        return result
    if kill is not None:
        # Asked before the nudge too: SIGCHLD is harmless to a parent that
        # ignores it, but it is still a signal the user has not agreed to.
        targets, spared = kill_plan(result)
        say(render_plan(targets, spared, kill))
        question = f"Send SIGCHLD, then {kill.name} if they still hold zombies,"
        if targets and not confirm(f"{question} to {len(targets)} process(es)?"):
            say(render_round(decline(result, targets, spared, kill)))
            say(render_summary(result))
            return result
    say(render_round(nudge(result, wait)))
    if kill is not None:
        targets, spared = kill_plan(result)  # those the nudge did not clear
        round_ = kill_parents(result, targets, spared, kill, wait)
        if targets:  # else the plan said it all
            say(render_round(round_))
    say(render_summary(result))
    return result
