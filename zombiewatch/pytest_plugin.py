"""pytest plugin: fail the test that leaves zombie processes behind.

This module owns the pytest side: options, ini keys, the ``zombiewatch``
marker, the ``zombie_guard`` fixture, which tests are guarded, and how a
leak is reported. The measuring (baseline, settle window, message,
reaping) is ``zombiewatch._guard``; the tree walk is ``monitor.Monitor``.

Off until asked for: installing zombiewatch changes nobody's test run.
Importing this module forks nothing, installs no signal handler, samples
no process and does not import psutil; the first guarded test does.

Turning it on, and precedence. Each setting comes from the first of these
that gives it; a bad value is a usage error that names its source:

1. the marker, per test: ``@pytest.mark.zombiewatch(settle=0.5, allow=1)``
   (or ``zombiewatch(0.5)``: the settle window is its one positional
   argument, as pytest-timeout takes ``timeout(5)``) guards the test;
   ``enabled=False`` exempts it from a suite-wide guard; ``gc`` and
   ``fail_orphans`` as below. Requesting the ``zombie_guard`` fixture
   guards the test like a bare marker does.
2. the options: ``--zombiewatch``, ``--zombiewatch-settle=SECONDS``,
   ``--zombiewatch-allow=N``, ``--zombiewatch-reap``,
   ``--zombiewatch-fail-orphans``, ``--zombiewatch-no-gc``.
3. the ini keys: ``zombiewatch = true``, ``zombiewatch_settle``,
   ``zombiewatch_allow``, ``zombiewatch_reap``, ``zombiewatch_fail_orphans``,
   ``zombiewatch_gc``. A bad ini value is an error even when an option
   overrides it.
4. the defaults: off, settle 1.0 s, allow 0, no reaping, orphans warned
   about, gc on.

What a guarded test is held to. Before its setup, the guard looks at the
descendants of the test process (with pytest-xdist, of the worker that runs
it). After its teardown, once every fixture has cleaned up, it waits at
most the settle window for processes the test started to finish and for
zombies to be collected, then fails the test if more than ``allow`` of its
zombies remain. Before failing it runs ``gc.collect()`` once and looks
again: a child that an object in a reference cycle collects in its
``__del__`` (pexpect, ptyprocess) goes then, and the test passes with a
warning to close it explicitly. The plugin only observes; with
``--zombiewatch-reap`` it then collects the zombies that are its own
children (the test's grandchildren only their parents can collect).

Whose a zombie is. A test's zombies are those of processes it started: not
running when it began, not started by a fixture of a wider scope, and held
inside its tree. Never a bystander's:

- a process the test leaves running gets a warning at its end ("left pid
  N running"), and is remembered for the session; if it exits later and is
  never collected, the leak is reported against that test, in the session
  summary, wherever the zombie is found (in a later test, or when the
  tests are done), and the run fails; the test running then passes;
- a process that a module-, class-, package- or session-scoped fixture
  starts (the guard looks before and after such a fixture's setup) is
  that fixture's, the same way, and no test waits for it;
- an orphan that escaped the tree (its parent exited; PID 1 or a
  subreaper holds it now; or its parent left the tree with it) is a
  warning naming who orphaned it, and fails the test only with
  ``--zombiewatch-fail-orphans``; an earlier test's escape is never a
  later test's. Kernel events see every escape; the sampler only those
  its looks catch.

If a fixture's teardown raises, the check of that test is skipped: its
cleanup did not finish. To turn a suite-wide ini setting off for one run,
use ``-o zombiewatch=false``.

Cost: when the test process has no child, a look is one ``waitid`` call
(WNOWAIT: it collects nothing); otherwise one walk of its tree, O(its
descendants), through ``/proc/PID/task/*/children``, or, with kernel
events, the events since the last look.

How a leak is reported: as an error at teardown (``pytest.fail`` from a
``trylast`` ``pytest_runtest_teardown``), the way a failing fixture
finalizer or pytest's own unraisable-exception check is. It cannot be a
failure of the call phase, because the check must run after the fixtures
are torn down: they are what usually collects the children (a fixture
that stops a server and waits for it), and teardown comes after the call
phase is reported. ``zombie_guard.check()`` in a test body fails the call
phase instead, with an ``AssertionError``. Everything else is a
``ZombiewatchWarning`` of the test.

Where each process was started: from the first guarded test on, wrappers
of the standard library's process-starting calls and a fork callback
record every start of a guarded test with its stack
(``zombiewatch._starts``), and each leak, process left running, escaped
orphan and late leak says "started at tests/test_x.py:42 in test_y
(subprocess.Popen(['true']))". They stay for the life of the process;
outside a guarded test they record nothing, and cost nothing per test.

The session summary says ``zombiewatch: N tests guarded, K tests leaked M
zombies``, then one line per leak found after its test ended and per
process still running when the tests were done; nothing when no test ran.
Counts travel on the teardown report (an attribute pytest-xdist
serializes) and what a worker finds after its last test in its
``workeroutput``, so the controller of an xdist run counts every worker's.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    import pluggy

    from zombiewatch._starts import Recorder

from zombiewatch._guard import (
    DEFAULT_ALLOW,
    DEFAULT_SETTLE,
    Escaped,
    LeakedZombie,
    Settings,
    ZombieGuard,
    ZombieLeak,
    ZombiewatchWarning,
    _plural,
    reap_text,
    unavailable_reason,
)

__all__ = ["Escaped", "LeakedZombie", "ZombieGuard", "ZombieLeak", "ZombiewatchWarning"]

MARKER = "zombiewatch"
FIXTURE = "zombie_guard"
MARKER_ARGS = ("settle", "allow", "enabled", "gc", "fail_orphans")
_MARKER_ARGS = frozenset(MARKER_ARGS)
REPORT_ATTR = "zombiewatch"  # on teardown reports of guarded tests, and in xdist's workeroutput


class _Defaults(NamedTuple):
    """The session's settings, from options, ini and defaults."""

    enabled: bool
    settings: Settings


class _Owner(NamedTuple):
    """Who started a process that outlived its test or fixture."""

    who: str  # a test's node id, or "fixture 'name' (module scope)"
    name: str
    start_ticks: int  # with the pid, the process's identity
    started_at: str  # the line that started it, as the guard says it


class _Session:
    """What one process of the session remembers between its guarded tests:
    the processes tests and wide fixtures left running, so that a zombie
    one of them becomes later is blamed on who started it, never on the
    test that happened to be running."""

    def __init__(self) -> None:
        self.left: dict[int, _Owner] = {}  # pid -> who started it
        self.current: ZombieGuard | None = None  # the guard of the running test
        self.starts: Recorder | None = None  # made with the first guard: the wrappers
        self.fixtures_watched = False

    def remember(self, pid: int, who: str, started_at: str) -> None:
        from zombiewatch import _procfs

        stat = _procfs.read_stat(pid)
        if stat is not None:
            self.left[pid] = _Owner(who, stat.comm, stat.start_ticks, started_at)

    def claim(self, zombie: LeakedZombie, found: str) -> dict[str, Any]:
        """The late leak of ``zombie``: who started it, as a report entry."""
        owner = self.left.pop(zombie.pid, None)
        if owner is None:
            return {"who": "", "pid": zombie.pid, "name": zombie.name, "found": found}
        # Named when it was left running: a zombie's name may not be read yet.
        return {
            "who": owner.who,
            "pid": zombie.pid,
            "name": owner.name,
            "found": found,
            "started_at": owner.started_at,
        }

    def at_end(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Look at what was left running, once, when the session's tests are
        done: (late leaks, still running)."""
        import os

        from zombiewatch import _procfs

        late, running = [], []
        me = os.getpid()
        for pid, owner in sorted(self.left.items()):
            stat = _procfs.read_stat(pid)
            if stat is None or stat.start_ticks != owner.start_ticks:
                continue  # collected: no leak
            entry = {
                "who": owner.who,
                "pid": pid,
                "name": owner.name,
                "started_at": owner.started_at,
            }
            if stat.state != "Z":
                running.append(entry)
            elif me in _procfs.ancestors(stat.ppid):
                late.append({**entry, "found": "when the session's tests were done"})
        self.left.clear()
        return late, running


_DEFAULTS = pytest.StashKey[_Defaults]()
_SESSION = pytest.StashKey[_Session]()
_GUARD = pytest.StashKey[ZombieGuard]()


# -- validation: every value says where it came from ------------------------------


def _validate_settle(value: object, where: str) -> float:
    """Return ``value`` as seconds >= 0, or raise UsageError naming ``where``."""
    settle = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        settle = float(value)
    elif isinstance(value, str):
        try:
            settle = float(value)
        except ValueError:
            pass  # reported below, with the source
    if not (math.isfinite(settle) and settle >= 0):
        raise pytest.UsageError(
            f"zombiewatch: {where}: settle must be a number of seconds >= 0, got {value!r}"
        )
    return settle


def _validate_allow(value: object, where: str) -> int:
    """Return ``value`` as a zombie count >= 0, or raise UsageError naming ``where``."""
    allow = -1
    if isinstance(value, int) and not isinstance(value, bool):
        allow = value
    elif isinstance(value, str) and value.strip().isdigit():
        allow = int(value)
    if allow < 0:
        raise pytest.UsageError(
            f"zombiewatch: {where}: allow must be a whole number of zombies >= 0, got {value!r}"
        )
    return allow


def _validate_bool(value: object, where: str, name: str = "enabled") -> bool:
    if not isinstance(value, bool):
        raise pytest.UsageError(
            f"zombiewatch: {where}: {name} must be True or False, got {value!r}"
        )
    return value


def _ini_where(config: pytest.Config, name: str) -> str:
    overrides = config.getoption("override_ini", None) or []
    if any(item.split("=", 1)[0].strip() == name for item in overrides):
        return f"-o {name}"
    return f"ini key {name} in {config.inipath}" if config.inipath else f"ini key {name}"


def _ini_text(config: pytest.Config, name: str) -> object:
    value: object = config.getini(name)
    return None if value in ("", None) else value


def _ini_bool(config: pytest.Config, name: str) -> bool:
    try:
        return bool(config.getini(name))
    # pytest raises UsageError for a value that does not fit the type
    # (ValueError before 8.4); neither says which key it was.
    except (pytest.UsageError, TypeError, ValueError) as err:
        raise pytest.UsageError(
            f"zombiewatch: {_ini_where(config, name)}: expected true or false ({err})"
        ) from None


def _option_or_ini(config: pytest.Config, option: str, ini: str) -> bool:
    """A boolean setting: the option if given, else the ini key (always
    validated: a bad ini value is an error even when the option wins)."""
    from_ini = _ini_bool(config, ini)
    given = config.getoption(option)
    return bool(given) if given is not None else from_ini


def _session_defaults(config: pytest.Config) -> _Defaults:
    """Resolve option > ini > default for the whole session."""
    settle: float = DEFAULT_SETTLE
    allow: int = DEFAULT_ALLOW
    ini_settle = _ini_text(config, "zombiewatch_settle")
    if ini_settle is not None:
        settle = _validate_settle(ini_settle, _ini_where(config, "zombiewatch_settle"))
    ini_allow = _ini_text(config, "zombiewatch_allow")
    if ini_allow is not None:
        allow = _validate_allow(ini_allow, _ini_where(config, "zombiewatch_allow"))
    opt_settle = config.getoption("zombiewatch_settle")
    if opt_settle is not None:
        settle = _validate_settle(opt_settle, f"--zombiewatch-settle={opt_settle}")
    opt_allow = config.getoption("zombiewatch_allow")
    if opt_allow is not None:
        allow = _validate_allow(opt_allow, f"--zombiewatch-allow={opt_allow}")
    enabled = _option_or_ini(config, "zombiewatch", "zombiewatch")
    reap = _option_or_ini(config, "zombiewatch_reap", "zombiewatch_reap")
    fail_orphans = _option_or_ini(config, "zombiewatch_fail_orphans", "zombiewatch_fail_orphans")
    collect = _ini_bool(config, "zombiewatch_gc") and not config.getoption("zombiewatch_no_gc")
    settings = Settings(settle, allow, reap, collect, fail_orphans)
    return _Defaults(enabled, settings)


def _item_settings(item: pytest.Item) -> tuple[Settings, bool]:
    """Resolve marker > session for one test: (settings, guarded)."""
    defaults = item.config.stash[_DEFAULTS]
    enabled = defaults.enabled or FIXTURE in getattr(item, "fixturenames", ())
    settings = defaults.settings
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        if not marker.args and not marker.kwargs:
            return settings, True  # a bare marker: guarded as the session says
        where = f"@pytest.mark.zombiewatch on {item.nodeid}"
        kwargs = marker.kwargs
        if marker.args:
            if len(marker.args) > 1 or "settle" in kwargs:
                raise pytest.UsageError(
                    f"zombiewatch: {where}: takes at most one positional argument, the "
                    f"settle window (as zombiewatch(0.5)), got {marker.args!r} and {kwargs!r}"
                )
            kwargs = {**kwargs, "settle": marker.args[0]}
        unknown = kwargs.keys() - _MARKER_ARGS
        if unknown:
            raise pytest.UsageError(
                f"zombiewatch: {where}: unknown argument {', '.join(sorted(unknown))} "
                f"(expected {', '.join(MARKER_ARGS)})"
            )
        enabled = _validate_bool(kwargs.get("enabled", True), where)
        changes: dict[str, Any] = {}
        if "settle" in kwargs:
            changes["settle"] = _validate_settle(kwargs["settle"], where)
        if "allow" in kwargs:
            changes["allow"] = _validate_allow(kwargs["allow"], where)
        for name in ("gc", "fail_orphans"):
            if name in kwargs:
                changes[name] = _validate_bool(kwargs[name], where, name)
        if changes:
            settings = settings._replace(**changes)
    return settings, enabled


def _start_guard(item: pytest.Item, settings: Settings, started_by: str) -> ZombieGuard:
    reason = unavailable_reason()
    if reason is not None:
        pytest.fail(f"zombiewatch cannot guard this test: {reason}", pytrace=False)
    session = item.config.stash[_SESSION]
    if not session.fixtures_watched:
        # Registered with the first guard: a session that guards nothing
        # pays nothing per fixture.
        session.fixtures_watched = True
        item.config.pluginmanager.register(_FixtureWatch(session), "zombiewatch-fixtures")
    # Recording from before the baseline: no start of the test is missed.
    starts = session.starts
    if starts is None:
        from zombiewatch import _starts

        starts = session.starts = _starts.recorder(str(item.config.rootpath))
    starts.begin()
    guard = ZombieGuard(settings, started_by=started_by)
    guard.starts = starts
    guard.session = session
    session.current = guard
    return guard


class _FixtureWatch:
    """Tells the guard which processes a fixture of a wider scope than the
    test starts: they live on by design, and their fate is the fixture's."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, None, None]:
        guard = self.session.current
        if guard is None or fixturedef.scope == "function":
            yield
            return
        who = f"fixture {fixturedef.argname!r} ({fixturedef.scope} scope)"
        before = guard.running(f"before {who} was set up")
        yield
        for pid in guard.running(f"after {who} was set up") - before:
            guard.foreign[pid] = who
            self.session.remember(pid, who, guard.started_at(pid))


# -- hooks ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the zombiewatch options and ini keys."""
    group = parser.getgroup("zombiewatch", "zombiewatch: fail tests that leave zombie processes")
    group.addoption(
        "--zombiewatch",
        action="store_true",
        default=None,
        help="guard every test: fail it if it leaves zombie processes behind",
    )
    group.addoption(
        "--zombiewatch-settle",
        metavar="SECONDS",
        default=None,
        help=f"wait up to SECONDS after a test for its zombies to be collected "
        f"(default {DEFAULT_SETTLE:g})",
    )
    group.addoption(
        "--zombiewatch-allow",
        metavar="N",
        default=None,
        help=f"zombies a test may leave and still pass (default {DEFAULT_ALLOW})",
    )
    group.addoption(
        "--zombiewatch-reap",
        action="store_true",
        default=None,
        help="after reporting a test's zombies, collect those that are this "
        "process's children, so they do not outlive the test",
    )
    group.addoption(
        "--zombiewatch-fail-orphans",
        action="store_true",
        default=None,
        help="also fail a test whose processes left orphans: children that "
        "escaped its tree to PID 1 or a subreaper (by default a warning)",
    )
    group.addoption(
        "--zombiewatch-no-gc",
        action="store_true",
        default=False,
        help="do not run gc.collect() before failing a test: a zombie kept by an "
        "object in a reference cycle then fails it or not as the collector runs",
    )
    parser.addini(
        "zombiewatch", "guard every test (like --zombiewatch)", type="bool", default=False
    )
    parser.addini("zombiewatch_settle", "like --zombiewatch-settle", default="")
    parser.addini("zombiewatch_allow", "like --zombiewatch-allow", default="")
    parser.addini("zombiewatch_reap", "like --zombiewatch-reap", type="bool", default=False)
    parser.addini(
        "zombiewatch_fail_orphans", "like --zombiewatch-fail-orphans", type="bool", default=False
    )
    parser.addini(
        "zombiewatch_gc",
        "run gc.collect() before failing a test (false: like --zombiewatch-no-gc)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, resolve the session's settings, check they can work."""
    config.addinivalue_line(
        "markers",
        "zombiewatch(settle=None, allow=None, enabled=True, gc=True, fail_orphans=False): "
        "fail this test if it leaves zombie processes; settle (also the one positional "
        "argument): seconds to wait for them to be collected; allow: how many it may "
        "leave; enabled=False exempts it from --zombiewatch",
    )
    defaults = _session_defaults(config)
    config.stash[_DEFAULTS] = defaults
    config.stash[_SESSION] = _Session()
    if defaults.enabled:
        reason = unavailable_reason()
        if reason is not None:
            raise pytest.UsageError(f"zombiewatch: cannot guard tests here: {reason}")
    # The controller of an xdist run counts and prints; its workers only guard.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Summary(defaults), "zombiewatch-summary")


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say that every test is guarded, and how."""
    defaults = config.stash.get(_DEFAULTS, None)
    if defaults is None or not defaults.enabled:
        return None
    s = defaults.settings
    extra = [", reaping its own children"] if s.reap else []
    if s.fail_orphans:
        extra.append(", failing on orphans")
    if not s.gc:
        extra.append(", no gc.collect()")
    how = f"settle {s.settle:g} s, allow {s.allow}{''.join(extra)}"
    return f"zombiewatch: guarding every test ({how})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Take the guard's baseline before any fixture of the test is set up."""
    try:
        settings, guarded = _item_settings(item)
    except pytest.UsageError as err:
        error = str(err)
    else:
        if guarded:
            guard = item.stash[_GUARD] = _start_guard(item, settings, "when the test began")
            if guard.baseline_zombies and item.config.stash[_SESSION].left:
                _claim_baseline(item, guard)
        return
    # A bad marker fails its own test at setup; the session goes on. Out of
    # the except block, so that it is reported once, not as a chain.
    pytest.fail(error, pytrace=False)


def _claim_baseline(item: pytest.Item, guard: ZombieGuard) -> None:
    """A process an earlier test left running that is a zombie already when
    this one begins (it exited during an unguarded test): its leak."""
    session = item.config.stash[_SESSION]
    late = [
        session.claim(z, f"before {item.nodeid} began")
        for z in guard._describe_zombies(guard.baseline_zombies & session.left.keys())
    ]
    if late:
        guard.outcome = {"late": late}


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After every fixture is torn down, fail the test for its zombies."""
    guard = item.stash.get(_GUARD, None)
    if guard is None:
        return
    session = guard.session
    session.current = None
    try:
        leaked = guard.settled(label="when the test ended")
        # Read, and the guard let go, when the teardown's report is made.
        outcome = guard.outcome
        if outcome is None:
            outcome = guard.outcome = {"leaked": 0, "zombies": len(leaked), "reaped": 0}
        else:
            outcome.update(leaked=0, zombies=len(leaked), reaped=0)
        if leaked or not guard.clean():  # most tests: no process at all, nothing to say
            _judge(item, guard, session, leaked, outcome)
    finally:
        if guard.starts is not None:
            guard.starts.active = False


def _judge(
    item: pytest.Item,
    guard: ZombieGuard,
    session: _Session,
    leaked: list[LeakedZombie],
    outcome: dict[str, Any],
) -> None:
    """Warn about and fail the test for what it left."""
    settings = guard.settings
    # Zombies of processes the test did not start: whose they are.
    late = [session.claim(z, f"during {item.nodeid}") for z in guard.inherited()]
    if late:
        outcome["late"] = outcome.get("late", []) + late
    for pid in guard.left_running():
        where = guard.started_at(pid)
        session.remember(pid, item.nodeid, where)
        started = f", started at {where}" if where else ""
        item.warn(
            ZombiewatchWarning(
                f"zombiewatch: left pid {pid} {guard._name(pid)!r} running{started}; if it "
                "exits and is never collected, its zombie is reported against this test"
            )
        )
    escaped = guard.escapes()
    outcome["escaped"] = len(escaped)
    fail_orphans = settings.fail_orphans and escaped
    if escaped and not fail_orphans:
        lines = "\n".join(guard.escape_lines(escaped))
        item.warn(ZombiewatchWarning(f"zombiewatch: orphans escaped this test's tree:\n{lines}"))
    if len(leaked) <= settings.allow:
        if guard.gc_collected:
            item.warn(ZombiewatchWarning("zombiewatch: " + guard.gc_text(guard.gc_collected)))
        if not fail_orphans:
            return
        leaked = []
    outcome["leaked"] = len(leaked)
    reaped = ""
    if settings.reap and leaked:
        pids, left = guard.reap(leaked)
        outcome["reaped"] = len(pids)
        reaped = reap_text(pids, left)
    message = guard.describe(
        leaked, settings.settle, settings.allow, reaped, escaped if fail_orphans else None
    )
    pytest.fail(message, pytrace=False)


def _stop_recording(guard: ZombieGuard) -> None:
    if guard.starts is not None:
        guard.starts.end()


# An old-style wrapper, which every pluggy has: pytest 7.4 (our floor) may
# come with a pluggy older than 1.2, which added wrapper=True.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """Put the guard's outcome on the teardown report, for the summary."""
    report = (yield).get_result()
    if call.when == "setup" and report.skipped and _GUARD in item.stash:
        _stop_recording(item.stash[_GUARD])
        del item.stash[_GUARD]  # a skipped test was not guarded
        item.config.stash[_SESSION].current = None
    elif call.when == "teardown":
        guard = item.stash.get(_GUARD, None)
        if guard is None:
            return
        del item.stash[_GUARD]  # done with it: items live as long as the session
        outcome = guard.outcome
        if outcome is None or "zombies" not in outcome:
            # A fixture's teardown raised, so ours never ran: its cleanup did
            # not finish, and a verdict on it would blame the wrong thing.
            _stop_recording(guard)
            guard.session.current = None
        if outcome is not None:
            # A plain attribute of JSON values: pytest-xdist serializes it.
            setattr(report, REPORT_ATTR, outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, None, None]:
    """When every test is done: what tests left running, once more."""
    yield
    config = session.config
    state = config.stash.get(_SESSION, None)
    if state is None or not state.left:
        return
    late, running = state.at_end()
    if hasattr(config, "workerinput"):
        workeroutput: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        workeroutput[REPORT_ATTR] = {"late": late, "running": running}
        return
    summary = config.pluginmanager.get_plugin("zombiewatch-summary")
    if summary is not None:
        summary.add_late(late)
        summary.running.extend(running)
        summary.fail_session(session)


class _Summary:
    """Counts guarded tests from their reports and prints the summary."""

    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults
        self.guarded = 0
        self.leaky: set[str] = set()  # tests (and fixtures) that leaked
        self.zombies = 0
        self.reaped = 0
        self.escaped = 0
        self.late: list[dict[str, Any]] = []  # leaks found after their test ended
        self.running: list[dict[str, Any]] = []  # left running when the session ended

    def add_late(self, late: list[dict[str, Any]]) -> None:
        for entry in late:
            self.late.append(entry)
            self.leaky.add(entry["who"] or "?")
            self.zombies += 1

    def fail_session(self, session: pytest.Session) -> None:
        """A leak found after its test passed still fails the run."""
        if self.late and not session.testsfailed:
            session.testsfailed += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome: dict[str, Any] | None = getattr(report, REPORT_ATTR, None)
        if report.when != "teardown" or outcome is None:
            return
        if "zombies" in outcome:  # else its check was skipped: a fixture's teardown raised
            self.guarded += 1
            if outcome["leaked"]:
                self.leaky.add(report.nodeid)
                self.zombies += outcome["leaked"]
            self.reaped += outcome["reaped"]
            self.escaped += outcome.get("escaped", 0)
        late = outcome.get("late")
        if late:
            self.add_late(late)

    # An xdist hook: optional, or pytest refuses the plugin where xdist is
    # not installed ("unknown hook").
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """An xdist worker is done: what it found after its last test."""
        found = getattr(node, "workeroutput", {}).get(REPORT_ATTR)
        if found:
            self.add_late(found["late"])
            self.running.extend(found["running"])

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, None, None]:
        yield
        self.fail_session(session)  # after every worker has reported

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.guarded:
            return  # nothing ran (--collect-only, or every test deselected)
        line = f"zombiewatch: {_plural(self.guarded, 'test')} guarded, "
        if self.leaky:
            line += f"{_plural(len(self.leaky), 'test')} leaked {_plural(self.zombies, 'zombie')}"
            if self.defaults.settings.reap:
                line += f" ({self.reaped} reaped)"
        else:
            line += "no test leaked a zombie"
        if self.escaped:
            line += f", {_plural(self.escaped, 'orphan')} escaped"
        terminalreporter.write_line(line, red=bool(self.leaky), green=not self.leaky)
        for entry in self.late:
            who = entry["who"] or "a process running before any guarded test saw it start"
            terminalreporter.write_line(
                f"zombiewatch: {who} leaked pid {entry['pid']} {entry['name']!r}, which ran on "
                f"after it and was never collected: its zombie was found {entry['found']}"
                + _started(entry),
                red=True,
            )
        for entry in self.running:
            terminalreporter.write_line(
                f"zombiewatch: {entry['who']} left pid {entry['pid']} {entry['name']!r} "
                "running when the session's tests were done" + _started(entry),
                yellow=True,
            )


def _started(entry: dict[str, Any]) -> str:
    where = entry.get("started_at")
    return f"; started at {where}" if where else ""


@pytest.fixture
def zombie_guard(request: pytest.FixtureRequest) -> ZombieGuard:
    """The zombie guard of this test; requesting it guards the test.

    ``zombie_guard.check()`` fails here and now if the test has left zombies
    (after up to the settle window); ``zombie_guard.zombies`` and
    ``zombie_guard.count()`` read them without waiting.
    """
    item = request.node
    assert isinstance(item, pytest.Item)
    guard = item.stash.get(_GUARD, None)
    if guard is None:
        # Requested through request.getfixturevalue() (the teardown checks
        # it), or exempted by enabled=False (only check() does): the
        # baseline is taken now.
        settings, _ = _item_settings(item)
        guard = _start_guard(item, settings, "when zombie_guard was requested")
        marker = item.get_closest_marker(MARKER)
        if marker is None or marker.kwargs.get("enabled", True):
            item.stash[_GUARD] = guard
    return guard
