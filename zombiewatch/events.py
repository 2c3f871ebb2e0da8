"""Follow a process tree from kernel events: every fork, exit and reap
observed, none sampled (Linux).

One walk of ``/proc`` seeds the tree; from then on the process-events
connector (``_cnproc``) reports each fork (a child joins the tree if its
parent is in it) and each exit, with the kernel's CLOCK_MONOTONIC
timestamp. A zombie's life starts at the exit of its last thread. Its end
is the reap: a pidfd held by a process that is not the parent reports
POLLHUP when the parent collects the child (docs/FACTS.md, "Kernel
events"); each child's pidfd is registered in epoll for HUP only, so a
child costs one wake-up at its reap and none at its exit. A lifetime is
therefore exact to that wake-up, and a zombie however brief is counted.
The wake-ups are taken by a feed (``_feeds``): a native thread where the
C extension was built, which opens each pidfd when the fork event is read
and stamps each reap, else this monitor's own thread; this module handles
the records either gives, in order, once per tick.

A child already reaped when its fork event is handled (a fast server
under load) cannot be watched: its pidfd_open fails with ESRCH. Its exit
time is still exact, and its reap happened before that failure, so its
lifetime is counted with that bound ("unwatched"), never as exact and
never dropped. When the kernel drops events (ENOBUFS: the socket buffer
was full) the tree is walked again and the report says how often.

Pids are reused only after a reap, so a fork event for a pid still held
as a zombie proves that zombie was collected before the fork: it is
closed with that bound, and the new process is another one.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable

from zombiewatch import _cnproc, _feeds, _procfs, _sampling
from zombiewatch.monitor import MAX_LIFETIMES, Monitor, Sample, TreeWatcher, Zombie

_NS = 1e-9
# Events of processes not (yet) known to be of the tree that are kept, in
# case their parent's fork event comes later: a few milliseconds of a busy
# host's forks and exits, a few hundred kB at most.
EARLY_EVENTS = 4096
# How much earlier than a fork event an event of its child may be stamped
# and still be that child's: the race is microseconds to milliseconds, and
# a pid mostly comes back only after pid_max others (32,768 forks here);
# when it comes back sooner, the parent an exit names tells (_foreign_exit).
EARLY_WINDOW_NS = 100_000_000
STOP_CHECK = 0.1  # seconds between two looks at whether the thread must stop
# Seconds between two walks of a tree the events say is empty, in the
# background thread's ticks (each ``sample()`` walks): a walk of /proc
# costs ~0.25 ms, and at every 10 ms tick it was 2.5 % of a core for an
# idle watch.
EMPTY_WALK = 0.1


class _Proc:
    """One process of the tree, as the events told it."""

    __slots__ = ("creator", "exact", "exit_ns", "pid", "reaped_ns", "threads", "unwatched", "watch")

    def __init__(self, pid: int, creator: int, threads: int = 1) -> None:
        self.pid = pid
        self.creator = creator  # the process that forked it: the one that should reap it
        self.threads = threads  # its thread group's live threads, as far as known
        self.exit_ns: int | None = None  # when its last thread exited (kernel time)
        self.reaped_ns: int | None = None  # a HUP that came before the exit event
        self.unwatched: int | None = None  # when pidfd_open found it already reaped
        self.watch = 0  # its pidfd's watch in the feed; 0: none, -1: forgotten
        self.exact = True  # False for a zombie already there when the watch began


def _not_collected(proc: _Proc, feed: _feeds.Feed) -> bool:
    """True if ``proc``'s pidfd is of a zombie: a process that has exited
    and was not collected. A pidfd that pidfd_open got after the pid went
    to a new process is of a live one (docs/FACTS.md, "Kernel events")."""
    return proc.watch > 0 and feed.uncollected(proc.pid, proc.watch)


class EventMonitor(TreeWatcher):
    """Watch ``root``'s tree from kernel events; the same interface as the
    sampling ``Monitor``. ``interval`` only spaces the timeline's points.

    Raises ``_cnproc.ConnectorError`` where events cannot be had.

    With ``history``, ``connector`` has listened since before ``root``
    started (``run`` opens it first): what it holds is the tree's whole
    history, handled before the walk, so a child that forked an orphan and
    exited before the watcher was made is still seen doing it.
    """

    method = "events"

    def __init__(
        self,
        root: int,
        adopters: Iterable[int] = (),
        interval: float = 0.01,
        connector: _cnproc.Connector | None = None,
        history: bool = False,
    ) -> None:
        super().__init__(root, adopters, interval)
        self._polling = threading.Lock()
        # The walks (seed, resynchronisation, tree()) are the sampler's.
        self._walker = Monitor(root, adopters, interval, source=_sampling.ProcfsSource())
        self._open(connector if connector is not None else _cnproc.Connector(), history)

    def _open(self, connector: _cnproc.Connector, history: bool = False) -> None:
        # Listen before the walk, so nothing forked meanwhile is missed.
        self._conn = connector
        self._feed = _feeds.open_feed(connector, self.root)
        self.stats.reader = "native" if self._feed.native else "python"
        self._procs: dict[int, _Proc] = {}
        self._children: dict[int, set[int]] = {}  # creator -> the pids it forked, unreaped
        self._live = 0
        self._empty_walk_at = 0.0  # the next background tick that may walk an empty tree
        self._root_exited = False
        self._lost_seen = 0
        self._closed = False
        # Events of processes not (yet) in the tree: pid -> [(what, ts, other pid)].
        self._early_events: dict[int, list[tuple[int, int, int]]] = {}
        self._early_count = 0
        # Zombies not named yet: pid -> since. The name costs a read of
        # /proc, paid only for one that outlives an interval.
        self._unnamed: dict[int, float] = {}
        if history:
            # Only the root is known: its children join from their fork
            # events, theirs after them. (Otherwise the walk goes first: the
            # events of a tree that was there before would find no parent.)
            self._handle(self._feed.take(0))
        self._seed()

    # -- the tree from /proc -----------------------------------------------------

    def _seed(self, catch_up: bool = False) -> None:
        """Add every process of the tree a walk finds and the events have not
        told of: at the start, and after the kernel dropped events.

        With ``catch_up`` (the caller holds ``_polling``), the records taken
        after the walk are handled before what it found: a child that forked
        and exited just before the walk is then known from its events, with
        its exact exit, not as a zombie of unknown age."""
        walker = self._walker
        with walker.lock:
            statuses, _listed = walker.walk()
            origin = dict(walker._origin)
            holding = dict(walker._holding)  # pid -> the adopter that holds it
        told: set[int] = set()  # pids the records after the walk told of, later than it
        if catch_up:
            records = self._feed.take(0)
            self._handle(records)
            told = {c if what == _cnproc.FORK else a for what, _ts, a, _b, c, *_ in records}
            for pid in told:
                statuses.pop(pid, None)
        now_ns = time.monotonic_ns()
        for proc in [p for p in self._procs.values() if p.pid not in statuses]:
            if proc.pid not in told:
                self._reconcile(proc, now_ns)
        for pid, status in statuses.items():
            known = self._procs.get(pid)
            if known is not None:
                proc = known
            else:
                stat = _procfs.read_stat(pid)
                # Live threads: a main thread that exited while others run
                # (Zl) is still in the count, and its exit event has passed.
                threads = 1 if stat is None else stat.num_threads
                if stat is not None and stat.state == "Z" and not stat.group_exited:
                    threads -= 1
                proc = self._add(pid, origin.get(pid, 0), threads)
                # Its events may have come before its parent's fork event,
                # which the walk overtook: its exit is then known exactly.
                self._replay_early(pid, now_ns - EARLY_WINDOW_NS)
                if pid in holding:
                    # Orphaned to an adopter before the events told of it:
                    # its parent's events had not come when the walk ran (a
                    # watcher descheduled between the two), or were lost. An
                    # escape all the same, as the sampler counts it; by whom
                    # is unknown. (Known ones are counted from the events.)
                    self.stats.add_unseen_escapes(holding[pid], 1)
            if status == "zombie" and proc.exit_ns is None:
                # Dead before the watch began, or its exit event was lost:
                # its lifetime counts from now, a lower bound.
                if known is None:
                    self.stats.before_watch += 1
                proc.threads, proc.exact = 0, False
                self._exited(proc, now_ns, origin.get(pid, 0))

    def _reconcile(self, proc: _Proc, now_ns: int) -> None:
        """``proc``, known from events, is not where the walk looked: while
        events were lost it was reaped, or it left the tree for an adopter."""
        if self._procs.get(proc.pid) is not proc:
            return  # taken out already, with a parent reconciled before it
        stat = _procfs.read_stat(proc.pid)
        if stat is not None:
            if stat.ppid != self.root and stat.ppid not in self._procs:
                self._adopted_by(proc, stat.ppid)
            return  # else it was listed after the walk passed: next time
        kids = self._children.pop(proc.pid, None)
        if kids:
            self._orphaned(proc.pid, kids, now_ns)
        if proc.exit_ns is None or proc.reaped_ns is not None or proc.watch <= 0:
            self._reaped(proc, proc.reaped_ns or now_ns, exact=False)
        # else a zombie with its pidfd: its HUP says when it was reaped.

    def _add(self, pid: int, creator: int, threads: int = 1, watch: int = 0) -> _Proc:
        """Add ``pid`` to the tree, watched for its reap: by ``watch``, which
        the native feed opened at its fork event, or by a pidfd opened now
        (-1: the native feed found it reaped already)."""
        proc = self._procs[pid] = _Proc(pid, creator, threads)
        self._children.setdefault(creator, set()).add(pid)
        if self.stats.reaps is not None:
            self.stats.reaps.setdefault(pid, [])
        self._live += 1
        proc.watch = watch or self._feed.watch(pid)
        if proc.watch <= 0:
            proc.watch = 0
            # Already reaped (its exit event, queued, is all there is), or
            # out of descriptors: unwatched, bounded by this moment.
            proc.unwatched = time.monotonic_ns()
        return proc

    # -- events ------------------------------------------------------------------

    def _handle(self, records: list[_feeds.Record]) -> None:
        """Handle the feed's records, in order (see ``_feeds``)."""
        self.stats.events += len(records)
        for what, ts, a, b, c, d, e, f in records:
            if what == _cnproc.FORK:
                # Parent pid, tgid, child pid, tgid, the native feed's watch.
                self._fork(b, c, d, ts, e)
            elif what == _cnproc.EXIT:
                # Pid, tgid, code, signal, parent pid, tgid.
                self._exit(a, b, f, ts)
            else:
                self._hup(a, b, ts)  # pid, watch
        lost = self._feed.lost
        if lost != self._lost_seen:
            self._lost_seen = self.stats.events_lost = lost
            self._seed()  # what the lost events would have said, from /proc

    def _fork(
        self, parent_tgid: int, child_pid: int, child_tgid: int, ts: int, watch: int = 0
    ) -> None:
        if child_pid != child_tgid:  # a new thread of a process
            proc = self._procs.get(child_tgid)
            if proc is not None:
                proc.threads += 1
            return
        if parent_tgid != self.root and parent_tgid not in self._procs:
            # Not our tree, or not yet: a parent's fork event is sent after
            # its child starts running, so on another CPU the child may fork
            # (or exit) first. Kept a moment, in case the parent joins.
            self._early(parent_tgid, (_cnproc.FORK, ts, child_pid))
            if watch > 0:  # the native feed took the parent for a member still
                self._feed.forget(child_pid, watch)
            return
        old = self._procs.get(child_pid)
        if old is not None:
            if (old.exit_ns is None and old.reaped_ns is None) or _not_collected(old, self._feed):
                # Alive, or a zombie not yet collected, so this is its own
                # fork event, late: a walk found it first (the kernel sends
                # it after the child runs, which may be after it exited).
                if watch > 0 and watch != old.watch:
                    self._feed.forget(child_pid, watch)
                return
            # The pid is reused, so the process that had it was reaped first.
            if watch > 0 and watch == old.watch:
                # The native feed opened that pidfd after the reuse (the old
                # one was reaped by then): it is the new process's, not to
                # be closed with the old one's end.
                old.watch = -1
            self._reaped(old, ts, exact=False)
        self._add(child_pid, parent_tgid, watch=watch)
        self._replay_early(child_pid, ts - EARLY_WINDOW_NS)

    def _replay_early(self, pid: int, since_ns: int) -> None:
        """Handle the events kept of ``pid`` (``_early``), just added to the
        tree; those stamped before ``since_ns`` are of an earlier process
        that had its pid."""
        events = self._early_events.pop(pid, ())
        self._early_count -= len(events)
        for what, when, other in events:
            if when < since_ns:
                continue
            if what == _cnproc.FORK:
                self._fork(pid, other, other, when)
            elif not self._foreign_exit(pid, other):
                self._exit(pid, pid, other, when)

    def _foreign_exit(self, pid: int, holder: int) -> bool:
        """True if an exit kept for ``pid`` names a parent that cannot be
        that of the process now in the tree: not its creator, not an
        adopter, while its creator lives (so it was never reparented). It
        is an earlier process's with the same pid: a pid comes back within
        milliseconds when something writes ns_last_pid (seen: a process
        SIGKILLed, and 4 ms later the tree's new child had its pid;
        docs/FACTS.md, "Kernel events")."""
        proc = self._procs.get(pid)
        if proc is None or holder in (0, proc.creator) or holder in self.adopters:
            return False
        if proc.creator == self.root:
            return not self._root_exited
        creator = self._procs.get(proc.creator)
        return creator is not None and creator.exit_ns is None

    def _early(self, pid: int, event: tuple[int, int, int]) -> None:
        """Keep an event about ``pid``, not (yet) of the tree, for a moment:
        the last ``EARLY_EVENTS`` such events, whatever process they are of."""
        early = self._early_events
        early.setdefault(pid, []).append(event)
        self._early_count += 1
        if self._early_count > EARLY_EVENTS:
            oldest = next(iter(early))
            self._early_count -= len(early.pop(oldest))

    def _exit(self, pid: int, tgid: int, holder: int, ts: int) -> None:
        if tgid == self.root:
            # The root's main thread (not any thread of it) ending: its
            # children go to an adopter.
            if pid == tgid:
                self._root_exited = True
                self._orphaned(self.root, list(self._children.get(self.root, ())), ts)
            return
        proc = self._procs.get(tgid)
        if proc is None:
            if pid == tgid:  # its fork event may still come (see _fork)
                self._early(tgid, (_cnproc.EXIT, ts, holder))
            return
        if proc.exit_ns is not None:
            return
        proc.threads -= 1
        if proc.threads > 0:
            return  # one thread ended; the process lives on
        # The kernel says parent 0 now and then (seen for children reaped
        # within a millisecond of their exit): the parent it had is the one
        # that forked it, unless an exit event said otherwise.
        self._exited(proc, ts, holder or proc.creator)

    def _exited(self, proc: _Proc, ts: int, holder: int) -> None:
        """``proc`` is a zombie since ``ts``, held by ``holder``."""
        proc.exit_ns = ts
        self._live -= 1
        kids = self._children.pop(proc.pid, None)
        if kids:
            self._orphaned(proc.pid, kids, ts)
        if holder != self.root and holder not in self._procs and holder not in self.adopters:
            # Held outside the tree by a process nobody watches: out of scope.
            self._adopted_by(proc, holder)
            return
        # As the sampler says: held by a subreaper or init, which did not
        # fork it (the root as PID 1 of a namespace holds its own children too).
        adopted = holder in self.adopters and holder != proc.creator
        self.zombies[proc.pid] = Zombie(
            proc.pid, holder, "?", ts * _NS, adopted=adopted, exact=proc.exact
        )
        self._unnamed[proc.pid] = ts * _NS
        stats = self.stats
        stats.zombies_seen += 1
        stats.peak_zombies = max(stats.peak_zombies, len(self.zombies))
        parent = self._parent(holder, adopted)
        if parent is not None:
            parent.zombies_seen += 1
        if proc.reaped_ns is not None:  # its HUP came first
            self._reaped(proc, proc.reaped_ns, exact=True)
        elif proc.unwatched is not None:
            self._reaped(proc, proc.unwatched, exact=False)

    def _orphaned(self, parent: int, kids: Iterable[int], ts: int) -> None:
        """``parent`` exited (at ``ts``) before reaping ``kids``: they went to
        an adopter. Those already zombies it never collected: its leaks,
        whoever collects them now."""
        creator = self._procs[parent].creator if parent in self._procs else 0
        for pid in kids:
            proc = self._procs.get(pid)
            if proc is None:
                continue
            # The kernel reparented them before it sent the exit event.
            stat = _procfs.read_stat(pid)
            zombie = self.zombies.get(pid)
            if proc.exit_ns is not None and zombie is not None and not zombie.adopted:
                if stat is None and not self._by_adopter(pid, proc.exit_ns):
                    # Collected already (its HUP is handled after these
                    # events), and the adopter does not say it did: by the
                    # parent, just before it exited.
                    continue
                self._collected(zombie, by_holder=False, held=max(0, ts - proc.exit_ns) * _NS)
                # Its reap is the adopter's from now on, not the creator's.
                adopter = stat.ppid if stat is not None else 0
                self.zombies[pid] = dataclasses.replace(zombie, ppid=adopter, adopted=True)
            if stat is None:
                continue  # collected already: its pidfd tells when
            adopter = stat.ppid
            # The root as PID 1 of a namespace (an adopter of its own tree,
            # run --pid1) takes every orphan: counted, and still in the tree.
            to_root = adopter == self.root and parent != self.root and adopter in self.adopters
            if (adopter == self.root or adopter in self._procs) and not to_root:
                continue  # a subreaper inside the tree took it: still ours to see
            self._adopted_by(proc, adopter)
            stats = self.stats
            stats.escaped[adopter] = stats.escaped.get(adopter, 0) + 1
            # As the sampler blames: the starter of the exited parent, where
            # known (a double fork's server, not its short-lived middle).
            if creator and self._parent(creator, adopter=False) is not None:
                key = (creator, True)
            else:
                self._parent(parent, adopter=False)
                key = (parent, False)
            stats.orphaned_by[key] = stats.orphaned_by.get(key, 0) + 1

    def _adopted_by(self, proc: _Proc, adopter: int) -> None:
        """``proc`` left the tree for ``adopter``. Watched adopters (the
        runner as subreaper, init under ``watch``) keep it in view as an
        adopted process, as the sampler does; any other takes it out of
        scope: its zombie is that adopter's to collect, not the tree's."""
        if adopter in self.adopters:
            zombie = self.zombies.get(proc.pid)
            if zombie is not None:
                self.zombies[proc.pid] = dataclasses.replace(zombie, ppid=adopter, adopted=True)
            return
        self._forget_fd(proc)
        del self._procs[proc.pid]
        self._children.pop(proc.pid, None)
        kids = self._children.get(proc.creator)
        if kids is not None:
            kids.discard(proc.pid)
        self._unnamed.pop(proc.pid, None)
        if self.zombies.pop(proc.pid, None) is None and proc.exit_ns is None:
            self._live -= 1

    def _hup(self, pid: int, watch: int, now_ns: int) -> None:
        proc = self._procs.get(pid)
        if proc is None or proc.watch != watch:
            return  # taken out of the tree by the events handled just before
        proc.watch = -1  # the feed ended the watch with its HUP
        if proc.exit_ns is None:
            proc.reaped_ns = now_ns  # the exit event is still on its way
        else:
            self._reaped(proc, now_ns, exact=True)

    def _forget_fd(self, proc: _Proc) -> None:
        """Close ``proc``'s pidfd; for the native feed it is no longer a
        member whose children are watched from their fork events."""
        if proc.watch >= 0:
            self._feed.forget(proc.pid, proc.watch)
            proc.watch = -1

    def _reaped(self, proc: _Proc, ts: int, exact: bool) -> None:
        """``proc`` was collected at ``ts`` (or, not ``exact``, before it)."""
        self._forget_fd(proc)
        del self._procs[proc.pid]
        kids = self._children.get(proc.creator)
        if kids is not None:
            kids.discard(proc.pid)
            if not kids:
                del self._children[proc.creator]
        zombie = self.zombies.pop(proc.pid, None)
        self._unnamed.pop(proc.pid, None)
        if proc.exit_ns is None:  # reaped unseen exiting: events were lost
            if zombie is not None:
                self._collected(zombie, by_holder=True, held=0.0)
            self._live -= 1
            return
        seconds = max(0, ts - proc.exit_ns) * _NS
        if zombie is not None:
            # By its holder: its parent, or (adopted) the adopter it went to;
            # unless the adopter says it collected one its parent still held:
            # the parent exited and its exit event is still on the way.
            by_holder = zombie.adopted or not self._by_adopter(proc.pid, proc.exit_ns)
            self._collected(zombie, by_holder, held=0.0 if by_holder else seconds)
        stats = self.stats
        if stats.reaps is not None:
            stats.reaps.setdefault(proc.pid, []).append((proc.exit_ns, ts, exact and proc.exact))
        if exact and proc.exact:
            stats.add_lifetime(seconds)
        elif proc.exact:
            stats.unwatched += 1
            stats.unwatched_bound = max(stats.unwatched_bound, seconds)
        if zombie is not None and zombie.adopted and len(stats.adopted_lifetimes) < MAX_LIFETIMES:
            stats.adopted_lifetimes.append(seconds)

    def _name_lingering(self, now: float) -> None:
        """Name the zombies that lived past one interval (a few): the name is
        read from /proc once, not at every exit. Their creator's state is
        read then too: one running or waiting for a CPU may be about to exit
        (a double fork's middle process held off the CPU), and is not held
        to ``EXIT_SLACK`` if it hands them off (docs/DESIGN.md, "Handed-off
        zombies")."""
        unnamed = self._unnamed
        running: dict[int, bool] = {}  # holder -> seen running: one read each
        for pid in [p for p, since in unnamed.items() if now - since >= self.interval]:
            del unnamed[pid]
            zombie = self.zombies.get(pid)
            stat = _procfs.read_stat(pid) if zombie is not None else None
            if zombie is None or stat is None:
                continue
            holder = zombie.ppid
            if not zombie.adopted and holder not in running:
                held_by = _procfs.read_stat(holder)
                running[holder] = held_by is not None and held_by.state == "R"
            busy = not zombie.adopted and running[holder]
            self.zombies[pid] = dataclasses.replace(zombie, name=stat.comm, holder_running=busy)

    def _update(
        self, timeout: float, tick_at: float | None = None, asked: bool = False
    ) -> Sample | None:
        """Wait up to ``timeout`` s for events and handle what came; then,
        if ``tick_at`` has come, add a point to the timeline and return it.

        One thread at a time takes records (``sample()`` may run beside the
        background thread), and handles them before the next take: in
        order, and a HUP is matched to its watch before another takes its
        descriptor's number. The tick's walk (``_seed``) takes records too.
        """
        if timeout > 0 and self._feed.native:
            # The native feed's thread takes the wake-ups: wait for the
            # tick here, holding nothing, then take what it recorded.
            self._stop.wait(timeout)
            timeout = 0
        point = None
        with self._polling:
            records = self._feed.take(timeout)
            started = time.monotonic()
            with self.lock:
                # In the order seen, each round's events before its reaps
                # (see _feeds). A HUP whose exit event has not come yet
                # waits for it.
                self._handle(records)
                if tick_at is not None and started >= tick_at:
                    point = self._tick(started, asked)
            self.stats.sample_time += time.monotonic() - started
        return point

    # -- the watcher's interface ---------------------------------------------------

    def sample(self) -> Sample:
        """Handle what is waiting and add a point to the timeline now.

        After ``close()`` it listens again and re-reads the tree first, as
        the sampler opens its descriptors again.
        """
        if self._closed:
            with self.lock:
                self.zombies.clear()
                self._open(_cnproc.Connector())
        point = self._update(0, tick_at=0.0, asked=True)
        assert point is not None
        return point

    def _tick(self, now: float, asked: bool = False) -> Sample:
        """Add a point to the timeline (under the lock). A tree the events
        say is empty is checked by a walk first: a fork event is sent after
        the child runs, so a parent descheduled in ``fork()`` can hold back
        the news of a child that is already serving. Every time when
        ``asked`` (``sample()``: "nothing left" ends the runner's settle
        window, which it asks before it ends), else every ``EMPTY_WALK``."""
        if self._live == 0 and not self.zombies and (asked or now >= self._empty_walk_at):
            self._empty_walk_at = now + EMPTY_WALK
            self._seed(catch_up=True)
        self._name_lingering(now)
        return self._point(now, self._live, len(self.zombies))

    def _watch(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            # Never wait long between two looks at _stop: with a long
            # --interval, stop() would otherwise wait for the next point.
            wait = min(STOP_CHECK, max(0.0, next_at - time.monotonic()))
            if self._update(wait, tick_at=next_at) is not None:
                next_at = max(next_at + self.interval, time.monotonic())

    def tree(self) -> list[int]:
        """The pids of the watched tree now, from a walk of ``/proc``."""
        return self._walker.tree()

    def statuses(self) -> dict[int, str]:
        """{pid: psutil status} of the tree now: "zombie" or "running"."""
        with self.lock:
            return {
                pid: "running" if proc.exit_ns is None else "zombie"
                for pid, proc in self._procs.items()
                if proc.reaped_ns is None
            }

    def close(self) -> None:
        """Release the connector, the pidfds and the walker. Idempotent; a
        later ``sample()`` listens again."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self._feed.close()  # every pidfd with it
            for proc in self._procs.values():
                proc.watch = -1
            self._conn.close()
            self._walker.close()
