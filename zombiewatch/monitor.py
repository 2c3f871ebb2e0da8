"""Watch a process tree for zombies: what every watch records (``Sample``,
``Zombie``, ``Parent``, ``MonitorStats``), the ``TreeWatcher`` base both
ways of watching share, and the first of them, the sampler (``Monitor``);
the second, from kernel events, is ``events.EventMonitor``, and
``observe`` chooses between them.

The sampler's scope: the root process and all its descendants, plus the processes of the
root's session that an *adopter* (a child subreaper such as the runner, or
PID 1) holds, so double-forked grandchildren stay in view after they are
reparented. Each sample walks the tree; how it reads a process is the
backend's (``_sampling``: kept ``/proc`` descriptors on Linux, O(tree);
psutil elsewhere). psutil makes the one-time read of a zombie holder's
name and command line.

A zombie's lifetime runs from the first sample that saw it in state Z to
the first sample that no longer does; lifetimes are therefore quantised by
the sampling interval, which is reported with them.

The monitor only reads. It never forks and never reaps. Processes that
vanish between two reads are normal; a process it may not read is an
error (``AccessDeniedError``), never a silent undercount.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import random
import signal
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

import psutil

from zombiewatch import _proctl, _sampling, _stats
from zombiewatch.errors import ZombiewatchError

# Memory stays flat however long a watch runs: the timeline is thinned to
# at most this many points (every other point dropped when full, so it
# always spans the whole run), lifetimes are a uniform reservoir sample for
# the percentiles (max is kept exactly), and parents are capped.
MAX_TIMELINE = 10_000
MAX_LIFETIMES = 10_000
MAX_PARENTS = 1_000
# With kernel events, a creator that exits within this many seconds of its
# child's exit was already exiting and could not have collected it: a double
# fork's middle process, a relay closing with its child. Measured at most
# 2.3 ms on a busy 2-core host; a creator still running or waiting for a CPU
# one interval after its child's exit may be held off the CPU far longer,
# and gets the settle window (docs/FACTS.md, "Handed-off zombies").
EXIT_SLACK = 0.1
# Handed-off zombies listed (each one its creator's leak, see TreeWatcher);
# past this many, those that count as leaks are counted, not listed.
MAX_HANDED_OFF = 1_000
# Samples an escaped orphan stays remembered after it was last seen held. A
# children list read while processes exit can skip entries, so one walk may
# miss an orphan that the next shows again: it must not count twice.
HELD_MEMORY = 100
# Upper edges of the lifetime histogram's buckets, in seconds; the last
# bucket holds everything longer.
HISTOGRAM_EDGES = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)
_random = random.Random(0)


def _identify(pid: int) -> tuple[str, list[str]] | None:
    """``pid``'s name and command line, or None if it is gone."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "?", ["(access denied)"]
    try:
        return name, proc.cmdline()
    except psutil.NoSuchProcess:
        return name, []  # exited between the two reads
    except psutil.AccessDenied:
        return name, ["(access denied)"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the tree: when, live children, zombies."""

    t: float
    live: int
    zombies: int


@dataclass(frozen=True, slots=True)
class Zombie:
    """A zombie as first seen: who it was and who held it."""

    pid: int
    ppid: int
    name: str
    since: float
    adopted: bool = False  # its parent is an adopter (subreaper or init), not its creator
    # ``since`` is the kernel's exit time (events), not the first look that
    # saw it in state Z (a sample, or a zombie already there when events began).
    exact: bool = False
    # Set for a zombie its creator (``ppid``) never collected: it exited
    # still holding it, and an adopter collected it (docs/DESIGN.md,
    # Handed-off zombies). Seconds the creator held it.
    held: float | None = None
    # Its creator was running or waiting for a CPU when looked at, one
    # interval after the zombie's exit: perhaps exiting itself, not yet
    # scheduled to (EXIT_SLACK does not apply to it).
    holder_running: bool = False

    def age(self, now: float) -> float:
        """Seconds since it became a zombie (``exact``) or was first seen as
        one; for one handed off, the seconds its creator held it."""
        return self.held if self.held is not None else now - self.since


@dataclass
class Parent:
    """A process that held zombies: who it is, and how many it held."""

    pid: int
    name: str
    cmdline: list[str]
    zombies_seen: int = 0
    adopter: bool = False  # held them as an adopter: a subreaper or init
    reaped: int = 0  # zombies it collected itself
    handed_off: int = 0  # zombies it never collected: it exited, an adopter did


class StopFlag:
    """The stop flag a background thread sleeps on between two looks.

    ``wait(timeout)`` is one lock acquire with a timeout, which the flag's
    ``set()`` ends early. ``threading.Event.wait`` builds a Condition waiter
    each time: a Python thread woken by the timer every 10 ms used 128 µs
    of CPU per wake-up on an Event and 79 µs in ``time.sleep`` (docs/FACTS.md,
    Kernel events), and a watcher wakes so at each timeline point.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._free = threading.Lock()  # held while the flag is clear
        self._free.acquire()
        self._set = False

    def set(self) -> None:
        with self._guard:
            if not self._set:
                self._set = True
                self._free.release()

    def clear(self) -> None:
        with self._guard:
            if self._set:
                self._set = False
                self._free.acquire()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less if the flag is set; return it."""
        if self._set:
            return True
        if self._free.acquire(timeout=max(0.0, timeout)):
            self._free.release()
        return self._set


class Timeline:
    """Samples over the whole run, thinned so it never exceeds ``limit``."""

    def __init__(self, limit: int = MAX_TIMELINE) -> None:
        self.limit = limit
        self.points: list[Sample] = []
        self._stride = 1
        self._skipped = 0

    def append(self, sample: Sample) -> None:
        """Keep one sample in every ``stride``; halve the list when full."""
        self._skipped += 1
        if self._skipped < self._stride:
            return
        self._skipped = 0
        self.points.append(sample)
        if len(self.points) >= self.limit:
            del self.points[1::2]
            self._stride *= 2

    @property
    def stride(self) -> int:
        """Samples per kept point: 1 until the run outgrew ``limit``, then 2, 4, ..."""
        return self._stride

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Sample:
        return self.points[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.points)


@dataclass
class MonitorStats:
    """Everything the monitor learned, for the report."""

    samples: int = 0
    interval: float = 0.0
    sample_time: float = 0.0  # seconds spent sampling, all samples together
    peak_zombies: int = 0
    max_live_children: int = 0
    zombies_seen: int = 0
    lifetimes_closed: int = 0
    max_lifetime: float = 0.0
    lifetimes: list[float] = field(default_factory=list)  # a reservoir, see MAX_LIFETIMES
    timeline: Timeline = field(default_factory=Timeline)
    last: Sample | None = None
    parents: dict[int, Parent] = field(default_factory=dict)
    # Orphans: processes of the tree that an adopter (a subreaper, init)
    # came to hold, by adopter; who orphaned them, by (pid, through): the
    # parent they had in the last sample before (0 if never seen), or, with
    # through=True, the parent of that parent where the tree showed one (a
    # double fork's server, not its short-lived middle process); how long
    # their zombies stayed zombies there.
    escaped: dict[int, int] = field(default_factory=dict)
    orphaned_by: dict[tuple[int, bool], int] = field(default_factory=dict)
    adopted_lifetimes: list[float] = field(default_factory=list)
    # How the tree was observed: "sample" (lifetimes quantised by the
    # interval) or "events" (kernel exit time to the reap's wake-up).
    method: str = "sample"
    # Events only: who read them, "native" (zombiewatch._pump's thread) or
    # "python" (the monitor's own thread; see _feeds).
    reader: str = "python"
    histogram: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_EDGES) + 1))
    # Events only: times the kernel dropped events (socket buffer full);
    # zombies reaped before they could be watched, whose lifetimes are only
    # bounded (at most ``unwatched_bound`` seconds); zombies already there
    # when the watch began, whose lifetimes count from then.
    events_lost: int = 0
    events: int = 0  # events only: the forks, exits and reaps read, for a cost per event
    # Events only, when a ground truth is taken: {pid: [(exit_ns, reap_ns,
    # exact)]} of every child the tree had, to set beside the server's own
    # record; the list stays empty for one not reaped while it was watched.
    reaps: dict[int, list[tuple[int, int, bool]]] | None = None
    unwatched: int = 0
    unwatched_bound: float = 0.0
    before_watch: int = 0

    def add_unseen_escapes(self, adopter: int, count: int) -> None:
        """Count orphans ``adopter`` reaped before any sample saw them
        adopted: who orphaned them is unknown."""
        if count > 0:
            self.escaped[adopter] = self.escaped.get(adopter, 0) + count
            self.orphaned_by[0, False] = self.orphaned_by.get((0, False), 0) + count

    def add_lifetime(self, seconds: float) -> None:
        """Record one completed lifetime, keeping memory bounded."""
        self.histogram[bisect.bisect_right(HISTOGRAM_EDGES, seconds)] += 1
        self.lifetimes_closed += 1
        self.max_lifetime = max(self.max_lifetime, seconds)
        if len(self.lifetimes) < MAX_LIFETIMES:
            self.lifetimes.append(seconds)
        else:
            # Reservoir sampling (Algorithm R): every lifetime has the same
            # chance to be in the sample the percentiles come from.
            slot = _random.randrange(self.lifetimes_closed)
            if slot < MAX_LIFETIMES:
                self.lifetimes[slot] = seconds

    def lifetime_ms(self) -> dict[str, float | None]:
        """p50, p99, max of completed zombie lifetimes, in ms."""
        summary = _stats.summary_ms(self.lifetimes)
        if self.lifetimes_closed:
            summary["max"] = round(self.max_lifetime * 1000, 3)
        return summary


class TreeWatcher:
    """What every way of watching a tree shares: its root and adopters, the
    statistics, the zombies present now, the parents' records, and a
    background thread (``start()``/``stop()``). Subclasses observe: by
    sampling (``Monitor``) or from kernel events (``events.EventMonitor``).
    """

    method = "sample"  # how it observes, as reports name it

    def __init__(self, root: int, adopters: Iterable[int], interval: float) -> None:
        self.root = root
        self.interval = interval
        self.adopters = tuple(adopters)
        sid = _proctl.session_of(root)
        if sid is None:
            raise ZombiewatchError(f"process {root} does not exist")
        self.sid = sid
        self.stats = MonitorStats(interval=interval, method=self.method)
        self.zombies: dict[int, Zombie] = {}
        self._thread: threading.Thread | None = None
        self._stop = StopFlag()
        self._error: BaseException | None = None
        self.lock = threading.Lock()  # held while an update changes the state
        # Zombies their creator exited without collecting (the first
        # MAX_HANDED_OFF): whoever collected them after, they are its leaks
        # if it held them long enough (runner.leaks); past the cap, a count
        # of those held long enough (handoff_bound).
        self.handed_off: list[Zombie] = []
        self.handed_off_unlisted = 0
        self.settle = 0.0  # the settle window (runner.leaks)
        # The zombies the adopter collects, where it says (the runner as
        # subreaper: OrphanCollector.collecting, pid -> when it saw the
        # zombie, each noted before its reap). A vanished zombie noted there
        # was handed off, not collected by its creator; None when the
        # adopter does not say.
        self.adopter_reaps: dict[int, int] | None = None

    def sample(self) -> Sample:
        """Bring the state up to date now and return the point it adds."""
        raise NotImplementedError

    def tree(self) -> list[int]:
        """The pids of the watched tree now: descendants and adopted members."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what watching holds. Idempotent."""

    def _watch(self) -> None:
        """Observe until ``self._stop`` is set (the background thread)."""
        raise NotImplementedError

    def _parent(self, ppid: int, adopter: bool) -> Parent | None:
        """The record of zombie holder ``ppid``, made on first sight."""
        parents = self.stats.parents
        parent = parents.get(ppid)
        if parent is None and ppid and len(parents) < MAX_PARENTS:
            # Gone: its zombie has been adopted since. Still recorded, "?".
            name, cmdline = _identify(ppid) or ("?", [])
            parent = parents[ppid] = Parent(ppid, name, cmdline, adopter=adopter)
        return parent

    def _collected(self, zombie: Zombie, by_holder: bool, held: float) -> None:
        """Count who collected ``zombie``: its holder (``by_holder``), or an
        adopter after the holder, its creator, exited after ``held`` s."""
        parent = self.stats.parents.get(zombie.ppid)
        if by_holder or zombie.adopted:
            if parent is not None:
                parent.reaped += 1
            return
        if parent is not None:
            parent.handed_off += 1
        if len(self.handed_off) < MAX_HANDED_OFF:
            self.handed_off.append(dataclasses.replace(zombie, held=held))
        elif held >= self.handoff_bound(zombie, self.settle):
            self.handed_off_unlisted += 1

    def handoff_bound(self, zombie: Zombie, settle: float) -> float:
        """How long the creator must have held ``zombie``, handed off, for it
        to be its leak: with kernel events ``EXIT_SLACK`` (the creator never
        collected it, and was not exiting), unless the creator was seen
        running then; when sampled, or then, the settle window (docs/DESIGN.md,
        "Handed-off zombies")."""
        if self.method == "events" and not zombie.holder_running:
            return min(settle, EXIT_SLACK)
        return settle

    def _by_adopter(self, pid: int, since_ns: int) -> bool:
        """True if the adopter said it collected ``pid``, a zombie since
        ``since_ns`` (monotonic): a note from before then is of an earlier
        process with that pid."""
        reaps = self.adopter_reaps
        seen = None if reaps is None else reaps.pop(pid, None)
        return seen is not None and seen >= since_ns

    def _point(self, now: float, live: int, zombies: int) -> Sample:
        """Record one point of the timeline."""
        stats = self.stats
        stats.samples += 1
        stats.peak_zombies = max(stats.peak_zombies, zombies)
        stats.max_live_children = max(stats.max_live_children, live)
        point = Sample(now, live, zombies)
        stats.timeline.append(point)
        stats.last = point
        return point

    @functools.cached_property
    def root_cmdline(self) -> list[str]:
        """The watched root's command line, or [] if it cannot be read."""
        try:
            return psutil.Process(self.root).cmdline()
        except psutil.Error:
            return []

    # -- the background thread -------------------------------------------------

    def start(self) -> None:
        """Observe in a thread until ``stop()``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="zombiewatch-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Signals must reach the main thread, whose cleanup they interrupt
        # at worst between two steps; in this thread a second Ctrl-C would
        # land in the middle of a join() and skip the cleanup.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._watch()
        except BaseException as err:  # handed to stop(), which re-raises it
            self._error = err

    def stop(self) -> None:
        """Stop the thread; re-raise what it failed with, if anything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class Monitor(TreeWatcher):
    """Watch ``root``'s tree and keep zombie statistics.

    Call ``sample()`` yourself, or ``start()`` a sampling thread and
    ``stop()`` it. ``zombies`` holds the zombies present at the last sample.
    ``close()`` releases what the backend holds (kept ``/proc``
    descriptors) when you are done with it. Without a ``source``, the best
    backend that works here reads the processes; where none does,
    ``UnsupportedError``.
    """

    def __init__(
        self,
        root: int,
        adopters: Iterable[int] = (),
        interval: float = 0.01,
        source: _sampling.ProcessSource | None = None,
    ) -> None:
        super().__init__(root, adopters, interval)
        # How each process is read: the best backend here unless given one.
        self.source = source if source is not None else _sampling.open_source()
        self._seen: Collection[int] = ()  # the tree at the last sample
        self._parent_of: dict[int, int] = {}  # pid -> its parent in the tree, last walk
        self._held: dict[int, int] = {}  # escaped pid -> the sample that last saw it held
        self._origin: dict[int, int] = {}  # this walk's findings, for _sample()
        self._holding: dict[int, int] = {}

    # -- reading processes ----------------------------------------------------

    def _status(self, pid: int) -> str | None:
        """Return ``pid``'s status, or None if it is gone.

        Where the source pins processes, the answer is for the process first
        read under that pid: None once that one is collected, even if its
        pid has been reused since.
        """
        stat = self.source.stat(pid, False)
        return None if stat is None else stat[0]

    def _stat(self, pid: int) -> tuple[str, int] | None:
        """Return the status and thread count of a pid just listed, or None if gone."""
        # Just listed as a child: if the process first read under this pid
        # is gone, the pid's new owner is read.
        return self.source.stat(pid, True)

    def _root_children(self) -> list[int]:
        # The root's own status is never reported; it is read for its
        # thread count.
        stat = self._stat(self.root)
        return [] if stat is None else self.source.children(self.root, stat[1])

    def _adopted(self) -> list[int]:
        """Processes of the watched tree that an adopter now holds.

        When the root leads its session (the runner starts its targets so),
        every member of the session is the root's doing. Otherwise the
        session is shared with the root's own parent and siblings (a shell,
        a test runner), so only processes already seen in the tree count:
        an orphan born and orphaned between two samples is then missed.
        """
        leader = self.sid == self.root
        found = []
        for adopter in self.adopters:
            if adopter == self.root:
                continue  # PID 1 of a namespace: see _reparented_to_root()
            # Read every sample, so through kept descriptors where possible;
            # thread count 0: each thread's list (PID 1 often has several).
            for pid in self.source.children(adopter, 0):
                if pid == self.root or _proctl.session_of(pid) != self.sid:
                    continue
                if leader or pid in self._seen:
                    found.append(pid)
                    self._holding[pid] = adopter
        return found

    def walk(self) -> tuple[dict[int, str], set[int]]:
        """Return the watched tree's {pid: status} and the pids listed.

        The root itself is not in the result: only its descendants and the
        adopted processes of its session are.
        """
        statuses: dict[int, str] = {}
        self._holding = {}
        self._origin = {}
        stack = [self.root, *self._adopted()]
        listed = set(stack)
        zombie = psutil.STATUS_ZOMBIE
        while stack:
            pid = stack.pop()
            if pid == self.root:
                children = self._root_children()
            else:
                stat = self._stat(pid)
                if stat is None:
                    continue
                status, threads = stat
                statuses[pid] = status
                if status == zombie:
                    continue  # a zombie has no children: they were reparented
                children = self.source.children(pid, threads)
            for child in children:
                if child not in listed:
                    listed.add(child)
                    stack.append(child)
                    self._origin[child] = pid
        self._reparented_to_root()
        return statuses, listed

    def _reparented_to_root(self) -> None:
        """Hold, for the root, the processes it adopted since the last walk.

        The root is an adopter of its own tree when it is PID 1 of a PID
        namespace (``run --pid1``): every orphan of the namespace goes to it.
        A child of the root that the last walk saw under another parent is
        one; an orphan first seen already under the root is not told from
        the root's own child (events tell them apart: they know who forked).
        """
        if self.root not in self.adopters:
            return
        for pid, parent in self._origin.items():
            if parent == self.root and self._parent_of.get(pid, self.root) != self.root:
                self._holding[pid] = self.root

    # -- sampling ------------------------------------------------------------

    def sample(self) -> Sample:
        """Take one sample and update the statistics."""
        with self.lock:
            return self._sample()

    def _sample(self) -> Sample:
        started = time.monotonic()
        statuses, listed = self.walk()
        now = time.monotonic()
        current = {pid for pid, st in statuses.items() if st == psutil.STATUS_ZOMBIE}
        for pid in self.zombies.keys() - current:
            # A children file can hide entries while a neighbour exits during
            # the read (proc(5)). A known zombie missing from every list is
            # checked directly before its lifetime is closed, so churn never
            # ends a lifetime early or counts one zombie twice.
            if pid not in listed and self._status(pid) == psutil.STATUS_ZOMBIE:
                current.add(pid)
            else:
                zombie = self.zombies.pop(pid)
                self.stats.add_lifetime(now - zombie.since)
                # Gone: collected by its holder, unless the adopter says it
                # collected it, or the holder is gone too. Then its creator
                # exited still holding it, and an adopter collected it (or,
                # within one interval, it reaped and then exited: a sample
                # cannot tell, see docs/DESIGN.md, "Handed-off zombies").
                by_adopter = self._by_adopter(pid, int(zombie.since * 1e9))
                by_holder = not by_adopter and self._holds(zombie.ppid)
                self._collected(zombie, by_holder, now - zombie.since)
                if zombie.adopted and len(self.stats.adopted_lifetimes) < MAX_LIFETIMES:
                    self.stats.adopted_lifetimes.append(now - zombie.since)
        new = current - self.zombies.keys()
        for pid in new:
            self.zombies[pid] = self._describe(pid, now)
        stats = self.stats
        stats.zombies_seen += len(new)
        point = self._point(now, len(statuses) - len(current & statuses.keys()), len(current))
        self._count_escapes(statuses.keys())
        # Whatever is held for processes that left the tree is released. A
        # known zombie that churn hid keeps its own: the next direct check
        # must read that process, not whoever takes its pid.
        self.source.retain({*statuses, *self.zombies, self.root, *self.adopters})
        self._seen = statuses.keys()
        stats.sample_time += time.monotonic() - started
        return point

    def _count_escapes(self, tree: Collection[int]) -> None:
        """Count each process an adopter newly holds, and who orphaned it."""
        stats = self.stats
        for pid, adopter in self._holding.items():
            if pid in self._held or pid not in tree:
                continue
            stats.escaped[adopter] = stats.escaped.get(adopter, 0) + 1
            key = self._orphaner(self._parent_of.get(pid, 0))
            if key not in stats.orphaned_by and len(stats.orphaned_by) >= MAX_PARENTS:
                key = (0, False)  # bounded memory: unattributed past the cap
            stats.orphaned_by[key] = stats.orphaned_by.get(key, 0) + 1
        now = stats.samples
        if now % HELD_MEMORY == 0:  # pruned now and then: kept 1-2x HELD_MEMORY samples
            self._held = {p: n for p, n in self._held.items() if now - n < HELD_MEMORY}
        self._held.update((pid, now) for pid in self._holding if pid in tree)
        self._parent_of = {pid: p for pid, p in self._origin.items() if pid in tree}

    def _orphaner(self, origin: int) -> tuple[int, bool]:
        """Who to blame for an orphan whose last parent was ``origin``.

        That parent has exited: that is how its child came to be adopted.
        Where the tree showed who started it, the blame goes there, "through
        its children": the middle process of a double fork exits at once, so
        this is one line per server, not one per fork. Whether a sample
        happened to name the middle process first is a race on a busy host,
        so it must not decide.
        """
        if not origin:
            return 0, False
        started_by = self._parent_of.get(origin, 0)
        if started_by and self._parent(started_by, adopter=False) is not None:
            return started_by, True
        self._parent(origin, adopter=False)  # named now if it is still readable
        return origin, False

    def _holds(self, ppid: int) -> bool:
        """True if ``ppid``, a zombie's holder, is still alive to collect it."""
        if not ppid or ppid in self.adopters:
            return True  # an adopter's, or (0) a holder never known: nobody to blame
        status = self._status(ppid)
        return status is not None and status != psutil.STATUS_ZOMBIE

    def _describe(self, pid: int, now: float) -> Zombie:
        ppid, name = self.source.describe(pid) or (0, "?")
        if not ppid:
            # Collected since the walk found it: the walk knows who held it.
            ppid = self._origin.get(pid) or self._holding.get(pid, 0)
        # The root as PID 1 holds its own children too: adopted are those
        # it came to hold as orphans.
        adopted = ppid in self.adopters and (
            ppid != self.root or pid in self._holding or pid in self._held
        )
        parent = self._parent(ppid, adopted)
        if parent is not None:
            parent.zombies_seen += 1
        return Zombie(pid=pid, ppid=ppid, name=name, since=now, adopted=adopted)

    def tree(self) -> list[int]:
        """The pids of the watched tree now: descendants and adopted members."""
        with self.lock:
            statuses, _listed = self.walk()
        return list(statuses)

    def close(self) -> None:
        """Release what the backend holds (``/proc`` descriptors). Idempotent.

        Call it when done: the monitor still works afterwards, but opens
        descriptors again for what it reads. A monitor garbage-collected
        without it closes them then.
        """
        with self.lock:
            self.source.close()

    # -- background sampling -----------------------------------------------

    def _watch(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample()
            next_at += self.interval
            # A slow sample (a huge tree) pushes the schedule back
            # instead of firing a burst of catch-up samples.
            next_at = max(next_at, time.monotonic())
            self._stop.wait(next_at - time.monotonic())
