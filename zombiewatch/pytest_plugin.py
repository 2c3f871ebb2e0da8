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
   guards the test; ``enabled=False`` exempts it from a suite-wide guard.
   Requesting the ``zombie_guard`` fixture guards the test like a bare
   marker does.
2. the options: ``--zombiewatch``, ``--zombiewatch-settle=SECONDS``,
   ``--zombiewatch-allow=N``, ``--zombiewatch-reap``.
3. the ini keys: ``zombiewatch = true``, ``zombiewatch_settle``,
   ``zombiewatch_allow``, ``zombiewatch_reap``.
4. the defaults: off, settle 1.0 s, allow 0, no reaping.

What a guarded test is held to. Before its setup, the guard looks at the
descendants of the test process (with pytest-xdist, of the worker that runs
it). After its teardown, once every fixture has cleaned up, it waits at
most the settle window for processes the test started to finish and for
zombies to be collected, then fails the test if more than ``allow``
zombies remain that were not zombies when it began. Zombies an earlier
test left are therefore never the next test's. The plugin only observes;
with ``--zombiewatch-reap`` it then collects the zombies that are its own
children (the test's grandchildren only their parents can collect).

Limits, stated in the failure message where they matter. A process the
test orphaned (double fork) belongs to PID 1 or a subreaper, not to the
test, and is out of view. A process still running after the settle window
does not fail the test; if it dies during a later test, that test reports
its zombie and says it was already running when it began. A process that
a test's setup starts for longer (a session-scoped server) makes that one
test wait the whole settle window. If a fixture's teardown raises, the
check of that test is skipped: its cleanup did not finish. To turn a
suite-wide ini setting off for one run, use ``-o zombiewatch=false``.

Cost: when the test process has no child, a look is one ``waitid`` call
(WNOWAIT: it collects nothing); otherwise one walk of its tree, O(its
descendants), through ``/proc/PID/task/*/children``.

How a leak is reported: as an error at teardown (``pytest.fail`` from a
``trylast`` ``pytest_runtest_teardown``), the way a failing fixture
finalizer or pytest's own unraisable-exception check is. It cannot be a
failure of the call phase, because the check must run after the fixtures
are torn down: they are what usually collects the children (a fixture
that stops a server and waits for it), and teardown comes after the call
phase is reported. ``zombie_guard.check()`` in a test body fails the call
phase instead, with an ``AssertionError``.

The session summary ends with one line, ``zombiewatch: N tests guarded,
M leaked zombies``. Counts travel on the teardown report (an attribute
pytest-xdist serializes), so the controller of an xdist run counts the
tests of every worker.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    import pluggy

from zombiewatch._guard import (
    DEFAULT_ALLOW,
    DEFAULT_SETTLE,
    LeakedZombie,
    Settings,
    ZombieGuard,
    ZombieLeak,
    reap_text,
    unavailable_reason,
)

__all__ = ["LeakedZombie", "ZombieGuard", "ZombieLeak"]

MARKER = "zombiewatch"
FIXTURE = "zombie_guard"
MARKER_ARGS = ("settle", "allow", "enabled")
REPORT_ATTR = "zombiewatch"  # on teardown reports of guarded tests


class _Defaults(NamedTuple):
    """The session's settings, from options, ini and defaults."""

    enabled: bool
    settings: Settings


class _Totals:
    """What the summary line counts."""

    def __init__(self) -> None:
        self.guarded = 0
        self.leaky = 0  # tests that failed for their zombies
        self.zombies = 0  # zombies in those tests
        self.reaped = 0


_DEFAULTS = pytest.StashKey[_Defaults]()
_GUARD = pytest.StashKey[ZombieGuard]()
_OUTCOME = pytest.StashKey[dict[str, int]]()


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


def _validate_enabled(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise pytest.UsageError(
            f"zombiewatch: {where}: enabled must be True or False, got {value!r}"
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
        ) from err


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
    enabled = bool(config.getoption("zombiewatch")) or _ini_bool(config, "zombiewatch")
    reap = bool(config.getoption("zombiewatch_reap")) or _ini_bool(config, "zombiewatch_reap")
    return _Defaults(enabled, Settings(settle=settle, allow=allow, reap=reap))


def _item_settings(item: pytest.Item) -> tuple[Settings, bool]:
    """Resolve marker > session for one test: (settings, guarded)."""
    defaults = item.config.stash[_DEFAULTS]
    enabled = defaults.enabled or FIXTURE in getattr(item, "fixturenames", ())
    settings = defaults.settings
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        where = f"@pytest.mark.zombiewatch on {item.nodeid}"
        if marker.args:
            raise pytest.UsageError(
                f"zombiewatch: {where}: takes keyword arguments only "
                f"({', '.join(MARKER_ARGS)}), got {marker.args!r}"
            )
        unknown = sorted(set(marker.kwargs) - set(MARKER_ARGS))
        if unknown:
            raise pytest.UsageError(
                f"zombiewatch: {where}: unknown argument {', '.join(unknown)} "
                f"(expected {', '.join(MARKER_ARGS)})"
            )
        enabled = _validate_enabled(marker.kwargs.get("enabled", True), where)
        settle, allow = settings.settle, settings.allow
        if "settle" in marker.kwargs:
            settle = _validate_settle(marker.kwargs["settle"], where)
        if "allow" in marker.kwargs:
            allow = _validate_allow(marker.kwargs["allow"], where)
        settings = Settings(settle=settle, allow=allow, reap=settings.reap)
    return settings, enabled


def _start_guard(item: pytest.Item, settings: Settings, started_by: str) -> ZombieGuard:
    reason = unavailable_reason()
    if reason is not None:
        pytest.fail(f"zombiewatch cannot guard this test: {reason}", pytrace=False)
    return ZombieGuard(settings, started_by=started_by)


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
    parser.addini(
        "zombiewatch", "guard every test (like --zombiewatch)", type="bool", default=False
    )
    parser.addini("zombiewatch_settle", "like --zombiewatch-settle", default="")
    parser.addini("zombiewatch_allow", "like --zombiewatch-allow", default="")
    parser.addini("zombiewatch_reap", "like --zombiewatch-reap", type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, resolve the session's settings, check they can work."""
    config.addinivalue_line(
        "markers",
        "zombiewatch(settle=None, allow=None, enabled=True): fail this test if it "
        "leaves zombie processes; settle: seconds to wait for them to be collected; "
        "allow: how many it may leave; enabled=False exempts it from --zombiewatch",
    )
    defaults = _session_defaults(config)
    config.stash[_DEFAULTS] = defaults
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
    reap = ", reaping its own children" if s.reap else ""
    return f"zombiewatch: guarding every test (settle {s.settle:g} s, allow {s.allow}{reap})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Take the guard's baseline before any fixture of the test is set up."""
    try:
        settings, guarded = _item_settings(item)
    except pytest.UsageError as err:
        # A bad marker fails its own test at setup; the session goes on.
        pytest.fail(str(err), pytrace=False)
    if guarded:
        item.stash[_GUARD] = _start_guard(item, settings, "when the test began")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After every fixture is torn down, fail the test for its zombies."""
    guard = item.stash.get(_GUARD, None)
    if guard is None:
        return
    del item.stash[_GUARD]  # done with it: items live as long as the session
    settings = guard.settings
    leaked = guard.settled(label="when the test ended")
    outcome = {"leaked": 0, "zombies": len(leaked), "reaped": 0}
    item.stash[_OUTCOME] = outcome
    if len(leaked) <= settings.allow:
        return
    outcome["leaked"] = len(leaked)
    reaped = ""
    if settings.reap:
        pids, left = guard.reap(leaked)
        outcome["reaped"] = len(pids)
        reaped = reap_text(pids, left)
    pytest.fail(guard.describe(leaked, settings.settle, settings.allow, reaped), pytrace=False)


# An old-style wrapper, which every pluggy has: pytest 7.4 (our floor) may
# come with a pluggy older than 1.2, which added wrapper=True.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """Put the guard's outcome on the teardown report, for the summary."""
    report = (yield).get_result()
    if call.when == "setup" and report.skipped and _GUARD in item.stash:
        del item.stash[_GUARD]  # a skipped test was not guarded
    elif call.when == "teardown":
        if _GUARD in item.stash:
            # A fixture's teardown raised, so ours never ran: its cleanup did
            # not finish, and a verdict on it would blame the wrong thing.
            del item.stash[_GUARD]
        outcome = item.stash.get(_OUTCOME, None)
        if outcome is not None:
            del item.stash[_OUTCOME]
            # A plain attribute of JSON values: pytest-xdist serializes it.
            setattr(report, REPORT_ATTR, outcome)


class _Summary:
    """Counts guarded tests from their reports and prints the summary line."""

    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults
        self.totals = _Totals()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome: dict[str, int] | None = getattr(report, REPORT_ATTR, None)
        if report.when != "teardown" or outcome is None:
            return
        totals = self.totals
        totals.guarded += 1
        if outcome["leaked"]:
            totals.leaky += 1
            totals.zombies += outcome["leaked"]
        totals.reaped += outcome["reaped"]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        totals = self.totals
        if not (self.defaults.enabled or totals.guarded):
            return
        tests = "test" if totals.guarded == 1 else "tests"
        line = f"zombiewatch: {totals.guarded} {tests} guarded, {totals.leaky} leaked zombies"
        if totals.leaky:
            line += f" ({totals.zombies} zombies in all"
            line += f", {totals.reaped} reaped)" if self.defaults.settings.reap else ")"
        terminalreporter.write_line(line, red=bool(totals.leaky), green=not totals.leaky)


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
