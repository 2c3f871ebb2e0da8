"""The ``zombiewatch`` command: option parsing, dispatch, output, and the sole
owner of exit codes.

``zombiewatch --mode MODE`` (no subcommand) runs the server in MODE under a
flood with the monitor watching and exits 0 only if no zombie leaked.
Subcommands: ``serve``, ``flood`` and ``modes`` expose the parts; ``run``
measures any program, ``watch`` a running process, ``scan`` every zombie
on the machine. Each command checks its options, hands the work to the
module that owns it (``runner``, ``server``, ``flood``, ``scan``), prints
what comes back and maps it to an ``ExitCode``. Results go to stdout,
logs and errors to stderr, one line each.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from zombiewatch import __version__, _defaults, _text, modes, runner, server
from zombiewatch.errors import ExitCode, Interrupted, ZombiewatchError
from zombiewatch.observe import OBSERVE_METHODS
from zombiewatch.report import Report
from zombiewatch.targets import READY_TIMEOUT

if TYPE_CHECKING:
    from zombiewatch.scan_report import Filters

_debug = False


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf, which compare false with
    everything and would turn a deadline or a timeout off."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Reject a host that cannot be resolved before anything starts."""
    if not value:
        raise click.BadParameter("must not be empty (use 0.0.0.0 to listen on every address)")
    try:
        socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        why = getattr(err, "strerror", None) or str(err)
        raise click.BadParameter(f"cannot resolve {value!r}: {why}") from err
    return value


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _debug
    _debug = _debug or value


def _available(name: str) -> str:
    mode = modes.get(name)
    if not mode.available():
        raise click.BadParameter(
            f"mode {name!r} is not available here: {mode.unavailable_reason()}",
            param_hint="'--mode'",
        )
    return name


MODE_HELP = "Reaping mode of the server (see `zombiewatch modes`)."

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _options(*decorators: Decorator) -> Decorator:
    """Apply several click options as one decorator, in the order given."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


# Options written once and shared by the commands that take them.
flood_options = _options(
    click.option("--connections", type=click.IntRange(min=1, max=10_000_000),
                 default=_defaults.CONNECTIONS,
                 show_default=True, help="Connections to open in all."),
    click.option("--concurrency", type=click.IntRange(min=1, max=10_000),
                 default=_defaults.CONCURRENCY,
                 show_default=True, help="Connections open at once."),
    click.option("--lines", type=click.IntRange(min=1, max=100_000), default=_defaults.LINES,
                 show_default=True, help="Lines sent on each connection."),
    click.option("--timeout", type=FiniteFloat(min=0.01, max=3600), default=_defaults.TIMEOUT,
                 show_default=True, help="Seconds each connection may take."),
    click.option("--half-close", is_flag=True,
                 help="Shut the write side of each connection once its lines are sent, for"
                 " servers that answer only at the end of input (by default each connection"
                 " reads its reply, then closes)."),
)  # fmt: skip


class FailureBudget(click.ParamType[tuple[float, bool], Any]):
    """``--max-failed N`` or ``N%``: connections allowed to fail, as a count
    or a percentage of the connections; parsed to (number, is_percent)."""

    name = "N|P%"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        percent = text.endswith("%")
        number = text[:-1] if percent else text
        try:
            amount = float(number) if percent else int(number, 10)
        except ValueError:
            self.fail(f"{value!r} is not a count (N) or a percentage (P%)", param, ctx)
        if not math.isfinite(amount) or amount < 0 or (percent and amount > 100):
            self.fail(f"{value!r} is not a count >= 0 or a percentage 0-100%", param, ctx)
        return amount, percent


# The verdict's rule on the load, for the commands that drive one.
load_options = _options(
    click.option("--max-failed", type=FailureBudget(), default="0", show_default=True,
                 help="Connections allowed to fail (a count, or P% of them) before the run"
                 " fails by the load rule (exit 4)."),
)  # fmt: skip
watch_options = _options(
    click.option("--settle", type=FiniteFloat(min=0, max=3600), default=_defaults.SETTLE,
                 show_default=True,
                 help="Seconds after the load (for watch: after the watch ends) before a zombie"
                 " still there counts as leaked."),
    click.option("--observe", type=click.Choice(OBSERVE_METHODS), default=_defaults.OBSERVE,
                 show_default=True,
                 help="How to watch the tree: kernel events (exact lifetimes; Linux, root or"
                 " CAP_NET_ADMIN before 6.6), sampling every --interval, or events where"
                 " they work."),
    click.option("--interval", type=FiniteFloat(min=0.001, max=60), default=_defaults.INTERVAL,
                 show_default=True,
                 help="Seconds between two samples of the process tree (with events: between"
                 " two points of the timeline)."),
    click.option("--max-leaked", type=click.IntRange(min=0), default=_defaults.MAX_LEAKED,
                 show_default=True,
                 help="Zombies allowed to outlive the settle window."),
    click.option("--grace", type=FiniteFloat(min=0, max=86400), default=None,
                 help="Fail if any zombie stays one longer than this many seconds, even"
                 " while the load runs."),
    click.option("--max-zombies", type=click.IntRange(min=1), default=None,
                 help="Fail (and end the load) as soon as this many zombies exist at once."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
    click.option("--junit-xml", type=click.Path(dir_okay=False), default=None,
                 callback=lambda ctx, param, value: _writable(value),
                 help="Also write the result as JUnit XML (one testcase per mode or program)."),
    click.option("--plot", "plot_file", type=click.Path(dir_okay=False), default=None,
                 callback=lambda ctx, param, value: _plottable(value), metavar="FILE",
                 help="Also draw zombies and live children over time, in the format FILE's"
                 " extension names (.png, .svg, .pdf, ...; needs matplotlib: pip install"
                 " matplotlib)."),
    click.option("--live", is_flag=True,
                 help="Show the phase, connections done, live children, zombies and the"
                 " oldest zombie's age on the terminal's alternate screen while it runs"
                 " (when stdout is a terminal)."),
)  # fmt: skip
# JUnit names the testcase of `run` and `watch` after the program: a port,
# a path or a pid in its name would break the testcase's history in CI.
name_option = click.option(
    "--name", default=None, metavar="NAME",
    help="Name the JUnit testcase (and the --live title) NAME.  [default: the program's"
    " name, e.g. 'my-server' or 'python3 app.py', without its arguments]",
)  # fmt: skip


def server_options(child_delay: float | None) -> Decorator:
    """``--max-children``, ``--child-delay`` and ``--conn-timeout``, for the
    commands that start the server. ``child_delay`` is the default; None lets
    each mode pick its own."""
    mode_default = " [default: the mode's, 0.02 s; 0 for wait]" if child_delay is None else ""
    return _options(
        click.option("--max-children", type=click.IntRange(min=1), default=None,
                     help="Live children the server allows at once; more clients wait in"
                     " the backlog."),
        click.option("--child-delay", type=FiniteFloat(min=0, max=60), default=child_delay,
                     show_default=child_delay is not None,
                     help="Keep each child alive after it replies, up to the next multiple of"
                     " this many seconds, so children exit in bursts." + mode_default),
        click.option("--conn-timeout", type=FiniteFloat(min=0.01, max=86400),
                     default=_defaults.CONN_TIMEOUT, show_default=True,
                     help="Seconds a whole connection may last, however slowly its client"
                     " sends or reads; then its worker answers ERROR and ends."),
    )  # fmt: skip


def _run_options(options: dict[str, Any], as_json: bool) -> runner.RunOptions:
    if "max_failed" in options:
        amount, percent = options.pop("max_failed")
        options = {**options, "max_failed": amount, "max_failed_percent": percent}
    if options.get("live") and (as_json or not sys.stdout.isatty()):
        runner.log("--live needs a terminal on stdout and no --json; showing the report only")
        options = {**options, "live": False}
    # A progress line for people watching a terminal; logs and CI stay clean.
    progress = sys.stderr.isatty() and not options.get("live")
    return runner.RunOptions(**options, progress=progress)


def _writable(path: str | None) -> str | None:
    """Refuse an output path that cannot be written, before the run starts:
    an empty name, a directory, a file we may not write, or a missing or
    read-only directory."""
    if path is None:
        return None
    if not path:
        raise click.BadParameter("the file name is empty")
    if os.path.isdir(path):
        raise click.BadParameter(f"cannot write {path!r}: it is a directory")
    if os.path.exists(path):
        # Opened for appending, which changes nothing: the one check that
        # root, a read-only mount and an immutable file all answer truly.
        try:
            with open(path, "ab"):
                pass
        except OSError as err:
            raise click.BadParameter(f"cannot write {path!r}: {err.strerror}") from err
        return path
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise click.BadParameter(f"cannot write {path!r}: no writable directory {parent!r}")
    return path


def _plottable(path: str | None) -> str | None:
    """Refuse --plot before the run when it cannot be drawn or written."""
    if path is not None:
        from zombiewatch.plot import image_format, require_matplotlib

        try:
            require_matplotlib()
        except ImportError as err:
            raise click.BadParameter(str(err)) from err
        # matplotlib picks the format from the name: refuse now what it
        # would refuse after the whole run.
        try:
            image_format(path)
        except ValueError as err:
            raise click.BadParameter(str(err)) from err
    return _writable(path)


def _terminal_width() -> int | None:
    """Columns of the terminal stdout is, or None when it is not one: a log
    or a pipe gets every column, whole (docs/DESIGN.md, Reports)."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _finish(
    ctx: click.Context,
    report: Report,
    as_json: bool,
    junit_xml: str | None = None,
    plot_file: str | None = None,
) -> NoReturn:
    _echo(report.to_json() if as_json else report.render(width=_terminal_width()))
    if junit_xml is not None:
        from zombiewatch.junit import write_junit

        write_junit(report, junit_xml)
    if plot_file is not None:
        from zombiewatch.plot import plot

        plot(report, plot_file)
    if as_json:
        # The text report names every failed rule; with --json, people
        # reading the log still see why a load failed.
        for run in report.runs:
            for rule in run.load_rules():
                runner.log(f"{run.mode}: {rule}")
    ctx.exit(report.return_code)


def _refuse_options_before(ctx: click.Context, name: str) -> None:
    """Refuse options of the default command given before a subcommand.

    click would parse them for the group and drop them: ``zombiewatch
    --json modes`` printed text, ``--mode none scan`` just scanned.
    """
    given = [
        param
        for param in ctx.command.params
        if param.expose_value
        and param.name is not None
        and ctx.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT)
    ]
    if not given:
        return
    typed = [param.opts[0] for param in given]
    assert isinstance(ctx.command, click.Group)
    theirs = {param.name for param in ctx.command.commands[name].params}
    missing = [param.opts[0] for param in given if param.name not in theirs]
    if missing:
        raise click.UsageError(
            f"{' and '.join(typed)} before '{name}' would be ignored: options before a command"
            f" are the default command's, and '{name}' has no {' or '.join(missing)}"
        )
    raise click.UsageError(
        f"options go after the command: 'zombiewatch {name} {' '.join(typed)} ...', not before it"
    )


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--mode",
    type=click.Choice([*modes.names(), "all"]),
    default=_defaults.MODE,
    show_default=True,
    help=MODE_HELP + " `all` runs every available mode in turn.",
)
@flood_options
@load_options
@watch_options
@server_options(child_delay=None)
@click.option(
    "--check", is_flag=True, help="Exit 0 when every mode met its expected verdict, 1 otherwise."
)
@click.option(
    "--ground-truth",
    is_flag=True,
    help="Have the server record each child's fork, exit and reap, and set the monitor's"
    " figures beside that record (JSON: ground_truth).",
)
@click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_set_debug,
    help="Show tracebacks of internal errors.",
)
@click.version_option(__version__, "-V", "--version")
@click.pass_context
def cli(
    ctx: click.Context,
    /,
    mode: str,
    check: bool,
    as_json: bool,
    junit_xml: str | None,
    plot_file: str | None,
    **options: Any,
) -> None:
    """Find the zombie processes a forking server leaves behind.

    Without a command: start the built-in fork-per-connection server in
    MODE, flood it with connections while a psutil monitor watches its
    process tree, and report. Options of the default command go before
    any command; a command's own options go after its name.

    \b
    Examples:
      zombiewatch --mode sigchld          # exit 0: no zombie leaked
      zombiewatch --mode none --json      # exit 1: every connection left one
      zombiewatch --mode all --check      # every mode against its expected verdict

    Exit status: 0 no zombie leaked and the load ran as asked; 1 zombies
    leaked (with --check: a mode missed its expected verdict); 2 usage
    error; 3 could not measure; 4 measured, but the load failed
    (connections failed beyond --max-failed, a --load command failed, or
    the program under test exited during the load); 130 interrupted.
    """
    if ctx.invoked_subcommand is not None:
        _refuse_options_before(ctx, ctx.invoked_subcommand)
        return
    names = modes.names() if mode == "all" else [_available(mode)]
    opts = _run_options(options, as_json)
    with runner.live_screen(opts):
        report = runner.run(names, opts, check=check)
    _finish(ctx, report, as_json, junit_xml, plot_file)


@cli.command()
@click.option(
    "--mode",
    type=click.Choice(modes.names()),
    default=_defaults.MODE,
    show_default=True,
    help=MODE_HELP,
)
@click.option(
    "--host",
    default=_defaults.HOST,
    callback=_host,
    show_default=True,
    help="Address to listen on; anything but loopback echoes for anyone.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=_defaults.PORT,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@server_options(child_delay=_defaults.CHILD_DELAY)
@click.option("--idle-timeout", type=FiniteFloat(min=0.01, max=3600),
              default=_defaults.IDLE_TIMEOUT,
              show_default=True, help="Seconds a client may stay silent before its worker"
              " answers ERROR and ends.")  # fmt: skip
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              callback=lambda ctx, param, value: _writable(value),
              help="Append a line per child to this file: F (forked), X (about to exit),"
              " R (reaped), each 'KIND PID MONOTONIC_NS', X and R then the child's ns on a"
              " CPU and waiting for one so far: the server's own account.")  # fmt: skip
def serve(
    mode: str,
    host: str,
    port: int,
    max_children: int | None,
    child_delay: float,
    conn_timeout: float,
    idle_timeout: float,
    record: str | None,
) -> None:
    """Run the fork-per-connection uppercase server in the foreground.

    Prints one JSON line when it listens: {"event": "listening", "host",
    "port", "pid", "mode"}. SIGTERM or Ctrl-C stops it.

    \b
    Examples:
      zombiewatch serve --mode none --port 8080     # leaks a zombie per connection
      zombiewatch serve --mode sigchld --record children.log
      zombiewatch run --flood 8080 -- zombiewatch serve --mode poll --port 8080

    Exit status: 0 stopped by SIGTERM or Ctrl-C; 2 usage error
    (unavailable mode); 3 could not listen.
    """
    _available(mode)
    config = server.Config(
        mode=mode,
        host=host,
        port=port,
        max_children=max_children,
        child_delay=child_delay,
        idle_timeout=idle_timeout,
        conn_timeout=conn_timeout,
        record=os.path.abspath(record) if record else None,
    )
    argv = server.command(config)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not import: the forking process must not carry click (docs/FACTS.md, Fork cost).
    os.execv(argv[0], argv)


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, callback=_host, help="Server address."
)
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Server port.")
@flood_options
@click.option(
    "--deadline",
    type=FiniteFloat(min=0.1, max=86400),
    default=None,
    help="Seconds the whole flood may take.  [default: 60 + 0.05 per connection]",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_context
def flood(ctx: click.Context, host: str, port: int, connections: int, concurrency: int,
          lines: int, timeout: float, half_close: bool, deadline: float | None,
          as_json: bool) -> None:  # fmt: skip
    """Flood a line server with connections and check every reply.

    Each connection sends LINES lines and expects them back in upper case.
    SIGTERM stops it early; it still prints what was done.

    \b
    Examples:
      zombiewatch flood --port 8080
      zombiewatch flood --host 127.0.0.1 --port 8080 --connections 5000 --concurrency 200
      zombiewatch flood --port 8080 --json | jq .failures

    Exit status: 0 every connection got its right answer; 1 some did
    not; 2 usage error; 3 no connection got through; 130 interrupted.
    """
    from zombiewatch import flood as flooder  # only this command needs it

    config = flooder.Config(
        host=host, port=port, connections=connections, concurrency=concurrency, lines=lines,
        timeout=timeout, deadline=deadline, half_close=half_close,
    )  # fmt: skip
    # The flooder's own run(): the same result, SIGTERM handling and exit
    # status as the runner's flooder process.
    ctx.exit(flooder.run(config, as_json))


def _not_runnable(name: str) -> str:
    """Why ``name``, which ``shutil.which`` did not find, cannot run."""
    if os.sep in name and os.path.isdir(name):
        return f"{name!r} is a directory"
    if os.sep in name and os.path.exists(name):
        return f"{name!r} is not executable (no execute permission)"
    return f"{name!r}: command not found"


def _address(value: str, what: str) -> tuple[str, int]:
    """Parse [HOST:]PORT (an IPv6 host in brackets: [::1]:8080) and resolve
    HOST now, once: a name that does not resolve is refused before anything
    starts."""
    from zombiewatch.targets import resolve

    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = _defaults.HOST, value
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise click.BadParameter(
            f"{value!r}: put an IPv6 address in brackets, [{host}]:{port}", param_hint=what
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not [HOST:]PORT", param_hint=what)
    host = host or _defaults.HOST
    try:
        resolve(host)
    except (OSError, UnicodeError) as err:
        why = getattr(err, "strerror", None) or str(err)
        raise click.BadParameter(f"cannot resolve {host!r}: {why}", param_hint=what) from err
    return host, int(port)


pid1_options = _options(
    click.option("--pid1", is_flag=True,
                 help="Run CMD as PID 1 of its own PID and mount namespaces (with its own"
                 " /proc), as a container without an init does, and check what that"
                 " changes: orphans and SIGTERM. Needs root, or user namespaces."),
    click.option("--init", metavar="PROGRAM", default=None,
                 help="With --pid1: run 'PROGRAM -- CMD' as PID 1 instead (e.g. tini)."),
    click.option("--compare-init", metavar="PROGRAM", default=None,
                 help="With --pid1: run twice, CMD as PID 1 and then 'PROGRAM -- CMD',"
                 " both in one report."),
    click.option("--stop-timeout", type=FiniteFloat(min=0, max=3600), default=None,
                 help="With --pid1: seconds PID 1 has to exit after SIGTERM before it is"
                 " SIGKILLed, as `docker stop -t`.  [default: 10]"),
)  # fmt: skip


def _pid1_inits(
    pid1: bool, init: str | None, compare_init: str | None, stop_timeout: float | None
) -> tuple[str | None, ...] | None:
    """Check the --pid1 options; return the inits to run CMD under (None: CMD
    itself as PID 1), or None without --pid1."""
    given = [
        name
        for name, value in (("--init", init), ("--compare-init", compare_init),
                            ("--stop-timeout", stop_timeout))
        if value is not None
    ]  # fmt: skip
    if not pid1:
        if given:
            raise click.UsageError(f"{given[0]} needs --pid1")
        return None
    if init is not None and compare_init is not None:
        raise click.UsageError("give --init or --compare-init, not both")
    for name, program in (("'--init'", init), ("'--compare-init'", compare_init)):
        if program is not None and shutil.which(program) is None:
            raise click.BadParameter(_not_runnable(program), param_hint=name)
    if compare_init is not None:
        return (None, compare_init)
    return (init,)


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--flood",
    "flood_to",
    metavar="[HOST:]PORT",
    default=None,
    help="Drive the built-in flooder against this address while watching.",
)
@click.option(
    "--load",
    "load_command",
    metavar="'CMD'",
    default=None,
    help="Drive this shell command line as the load while watching; a non-zero exit"
    " status fails the run (the load rule, exit 4).",
)
@click.option(
    "--wait-port",
    metavar="[HOST:]PORT",
    default=None,
    help="Wait until CMD accepts connections here before the load starts."
    "  [default: the --flood address]",
)
@click.option(
    "--ready-timeout",
    type=FiniteFloat(min=0.1, max=86400),
    default=READY_TIMEOUT,
    show_default=True,
    help="Seconds CMD may take to listen on the --wait-port (or --flood) address: raise it"
    " for slow starters (JVMs, app servers that preload).",
)
@click.option(
    "--no-subreaper",
    "subreaper",
    flag_value=False,
    default=True,
    help="Do not adopt CMD's orphans: let them go to PID 1, as under a plain init, and"
    " report how many escaped there and how long their zombies stayed.",
)
@click.option(
    "--duration",
    type=FiniteFloat(min=0.01, max=7 * 86400),
    default=None,
    help="Without a load: watch this many seconds, then stop CMD.  [default: until CMD exits]",
)
@pid1_options
@click.option(
    "--cmd-output",
    type=click.Path(dir_okay=False),
    default=None,
    callback=lambda ctx, param, value: _writable(value),
    metavar="FILE",
    help="Write CMD's stdout and stderr to FILE (emptied first) instead of to stderr, where"
    " each line is prefixed with 'NAME[PID]: '.",
)
@flood_options
@load_options
@watch_options
@name_option
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
@click.pass_context
def run(
    ctx: click.Context,
    /,
    command: tuple[str, ...],
    flood_to: str | None,
    load_command: str | None,
    wait_port: str | None,
    as_json: bool,
    junit_xml: str | None,
    plot_file: str | None,
    pid1: bool,
    init: str | None,
    compare_init: str | None,
    stop_timeout: float | None,
    **options: Any,
) -> None:
    """Start CMD, watch its whole tree under load, stop it, and report.

    CMD runs in its own session without a shell. With --flood the built-in
    flooder drives it once it listens; with --load any command does;
    without either, zombiewatch watches until CMD exits or --duration
    passes. At the end CMD and everything it started get SIGTERM, then
    SIGKILL.

    \b
    Examples:
      zombiewatch run --flood 8080 --junit-xml zw.xml --name api -- ./my-server --port 8080
      zombiewatch run --load 'ab -n 500 http://127.0.0.1:8080/' --wait-port 8080 -- ./my-server
      zombiewatch run --duration 60 --grace 5 -- ./job-runner

    With --pid1, CMD runs as PID 1 of its own PID and mount namespaces (as
    root, else in a user namespace), as in a container without an init, and
    the report adds two checks: orphans (did it collect what was orphaned
    to it) and SIGTERM (did it stop on SIGTERM within --stop-timeout).

    Exit status: 0 no zombie leaked and the load ran as asked; 1 zombies
    leaked (with --pid1: or a check failed); 2 usage error; 3 could not
    measure (CMD did not start or listen, or the port is another
    program's); 4 measured, but the load failed (connections failed beyond
    --max-failed, the --load command exited non-zero, or CMD ended during
    the load); 130 interrupted.
    """
    inits = _pid1_inits(pid1, init, compare_init, stop_timeout)
    if inits is not None and not options["subreaper"]:
        raise click.UsageError(
            "--no-subreaper does not apply with --pid1: every orphan goes to PID 1 of the namespace"
        )
    if flood_to is not None and load_command is not None:
        raise click.UsageError("give --flood or --load, not both")
    if ctx.get_parameter_source("ready_timeout") != ParameterSource.DEFAULT and not (
        flood_to or wait_port
    ):
        raise click.UsageError(
            "--ready-timeout bounds the wait for --wait-port or --flood: give one"
        )
    if shutil.which(command[0]) is None:
        raise click.BadParameter(_not_runnable(command[0]), param_hint="CMD")
    flood_addr = _address(flood_to, "'--flood'") if flood_to else None
    port_addr = _address(wait_port, "'--wait-port'") if wait_port else flood_addr
    opts = _run_options(options, as_json)
    if inits is not None:
        from zombiewatch import pid1 as pid1_runner

        with runner.live_screen(opts):
            report = pid1_runner.run_pid1(
                list(command), opts,
                pid1_runner.STOP_TIMEOUT if stop_timeout is None else stop_timeout,
                inits, flood_addr, load_command, port_addr,
            )  # fmt: skip
    else:
        with runner.live_screen(opts):
            report = runner.run_command(list(command), opts, flood_addr, load_command, port_addr)
    _finish(ctx, report, as_json, junit_xml, plot_file)


class ProcessId(click.IntRange):
    """A pid; an empty argument is "no PID given", not a bad integer:
    ``watch "$(pgrep -o gunicorn)"`` when nothing matches passes ''."""

    def __init__(self) -> None:
        super().__init__(min=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            raise click.UsageError(
                "no PID given: the argument is empty (did the command meant to print it find"
                " nothing?)",
                ctx,
            )
        return super().convert(value, param, ctx)


@cli.command()
@click.argument("pid", type=ProcessId())
@click.option(
    "--duration",
    type=FiniteFloat(min=0.01, max=30 * 86400),
    default=None,
    help="Seconds to watch.  [default: until Ctrl-C or the process exits]",
)
@watch_options
@name_option
@click.pass_context
def watch(
    ctx: click.Context,
    /,
    pid: int,
    as_json: bool,
    junit_xml: str | None,
    plot_file: str | None,
    **options: Any,
) -> None:
    """Watch a running process and its tree for zombies.

    Starts and stops nothing. Ctrl-C or --duration ends the watch; the
    settle window follows, then the report.

    \b
    Examples:
      zombiewatch watch 4242 --duration 60
      zombiewatch watch "$(pgrep -o gunicorn)" --duration 300 --live
      zombiewatch watch 4242 --json --junit-xml zombies.xml --name gunicorn

    Exit status: 0 no zombie leaked; 1 zombies leaked; 2 usage error (no
    PID given); 3 could not measure (no such process, access denied);
    130 a second Ctrl-C during the settle window.
    """
    opts = _run_options(options, as_json)
    with runner.live_screen(opts):
        report = runner.watch(pid, opts)
    _finish(ctx, report, as_json, junit_xml, plot_file)


def _scan_filters(user: str | None, min_count: int, parent_pids: tuple[int, ...]) -> Filters:
    """Check scan's --user and --parent; return the filters the options make."""
    from zombiewatch import _procfs
    from zombiewatch.scan import resolve_user
    from zombiewatch.scan_report import Filters

    uid = None
    if user is not None:
        try:
            uid = resolve_user(user)
        except LookupError as err:
            raise click.BadParameter(str(err), param_hint="'--user'") from err
    for pid in parent_pids:
        if _procfs.read_stat(pid) is None:
            raise click.BadParameter(f"no process {pid}", param_hint="'--parent'")
    return Filters(uid=uid, user=user, min_count=min_count, parents=parent_pids)


def _kill_signal(kill_parents: bool, signal_name: str | None, yes: bool) -> signal.Signals | None:
    """Check scan's --kill-parents, --signal and --yes; return the signal to
    send to the parents, or None without --kill-parents."""
    from zombiewatch.scan import parse_signal

    if signal_name is not None and not kill_parents:
        raise click.UsageError("--signal is the signal of --kill-parents; give both or neither")
    try:
        sig = parse_signal(signal_name or "TERM")
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--signal'") from err
    # Refuse before anything is signalled, the nudge included: a prompt that
    # nobody can answer would hang a cron job or CI step.
    if kill_parents and not yes and not sys.stdin.isatty():
        raise click.UsageError(
            "--kill-parents asks before it signals, and stdin is not a terminal:"
            " add --yes to confirm in advance (nothing was signalled)"
        )
    return sig if kill_parents else None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--user", metavar="USER", default=None, help="Only parents run by USER (a name or a uid)."
)
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=_defaults.MIN_COUNT,
    show_default=True,
    help="Only parents holding at least this many zombies.",
)
@click.option(
    "--parent",
    "parent_pids",
    type=click.IntRange(min=1),
    metavar="PID",
    multiple=True,
    help="Only the zombies of this process (repeat for several).",
)
@click.option(
    "--reap",
    is_flag=True,
    help="Send SIGCHLD to each parent (harmless), wait, and report which collected"
    " their zombies and which ignored it.",
)
@click.option(
    "--kill-parents",
    is_flag=True,
    help="Show the plan and ask (or --yes) before any signal; then nudge as --reap does and"
    " send --signal to the parents still holding zombies. Their zombies pass to PID 1 or a"
    " subreaper.",
)
@click.option(
    "--signal",
    "signal_name",
    metavar="SIG",
    default=None,
    help="Signal for --kill-parents: a name (TERM, KILL, ...) or number.  [default: TERM]",
)
@click.option("-y", "--yes", is_flag=True, help="Confirm --kill-parents without asking.")
@click.option(
    "--all-users",
    is_flag=True,
    help="As root, let --reap and --kill-parents signal other users' processes too"
    " (without it they are listed but spared).",
)
@click.option(
    "--wait",
    type=FiniteFloat(min=0, max=60),
    default=_defaults.SCAN_WAIT,
    show_default=True,
    help="Seconds each signal may take to show its effect.",
)
@click.pass_context
def scan(
    ctx: click.Context,
    as_json: bool,
    user: str | None,
    min_count: int,
    parent_pids: tuple[int, ...],
    reap: bool,
    kill_parents: bool,
    signal_name: str | None,
    yes: bool,
    all_users: bool,
    wait: float,
) -> None:
    """List every zombie on the machine, grouped by the process holding it.

    For each parent: pid, user, name, command line, how many zombies it
    holds and how long the oldest has been one at most (a process's start
    is recorded, its death is not). Zombies held by PID 1 are orphans that
    escaped their parent. PID 1, kernel threads and this command's
    ancestors are never signalled, nor other users' processes unless you
    are root and give --all-users. --kill-parents shows its plan and asks
    (or takes --yes) before any signal, the SIGCHLD nudge included.

    \b
    Examples:
      zombiewatch scan --min-count 10 --user www-data
      zombiewatch scan --json | jq '.parents[] | {pid, count, cmdline}'
      zombiewatch scan --kill-parents --parent 4242

    Exit status: 0 no zombie matches (with --reap: every one was
    collected); 1 zombies remain; 2 usage error.
    """
    from zombiewatch import scan as scanner

    unavailable = scanner.unavailable_reason()
    if unavailable is not None:
        raise click.UsageError(unavailable)
    filters = _scan_filters(user, min_count, parent_pids)
    kill = _kill_signal(kill_parents, signal_name, yes)
    blind_spot = scanner.blind_spot()
    if blind_spot is not None:
        runner.log(blind_spot)

    def show(text: str) -> None:
        # With --json, stdout carries only the final object; people read stderr.
        click.echo(text, err=as_json)

    def confirm(question: str) -> bool:
        return yes or click.confirm(question, err=as_json)

    result = scanner.run(
        filters,
        reap=reap,
        kill=kill,
        wait=wait,
        confirm=confirm,
        show=show,
        table=not as_json,
        width=_terminal_width(),
        all_users=all_users,
    )
    if as_json:
        click.echo(result.to_json())
    ctx.exit(result.return_code)


@cli.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=_defaults.EXPORT_LISTEN,
    show_default=True,
    help="Serve /metrics here ([::1]:9577 for IPv6; port 0 picks a free one). Anything but"
    " loopback lets whoever reaches it read this host's zombie holders and users.",
)
@click.option(
    "--textfile",
    metavar="DIR",
    default=None,
    help="Instead of serving, write DIR/zombiewatch.prom every --every seconds, atomically,"
    " for node_exporter's textfile collector.",
)
@click.option(
    "--every",
    type=FiniteFloat(min=0.1, max=86400),
    default=_defaults.EXPORT_EVERY,
    show_default=True,
    help="Seconds between two writes of --textfile.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=1000),
    default=_defaults.EXPORT_TOP,
    show_default=True,
    help="Parents (command name and user) with most zombies labelled by name; the rest are"
    ' summed under parent="other".',
)
@click.option(
    "--pid-label",
    is_flag=True,
    help="Also label each of the --top parents with its pid (one series per process).",
)
@click.option(
    "--observe",
    type=click.Choice(("auto", "events", "scan")),
    default="auto",
    show_default=True,
    help="events: also count zombies created and collected and time their lifetimes from"
    " kernel events (Linux; root or CAP_NET_ADMIN before 6.6); scan: count zombies at each"
    " scrape only; auto: events where they work.",
)
@click.pass_context
def export(
    ctx: click.Context,
    listen: str,
    textfile: str | None,
    every: float,
    top: int,
    pid_label: bool,
    observe: str,
) -> None:
    """Export this machine's zombies as Prometheus metrics, until SIGTERM or Ctrl-C.

    Serves /metrics on --listen, or writes --textfile DIR for node_exporter.
    Each scrape scans /proc as `zombiewatch scan` does. Prints one JSON line
    when it is up. Needs prometheus_client, the prometheus extra: pip
    install prometheus_client (or '.[prometheus]' in a clone).

    \b
    Examples:
      zombiewatch export
      zombiewatch export --listen 0.0.0.0:9577 --top 20
      zombiewatch export --textfile /var/lib/prometheus/node-exporter --every 15

    Exit status: 0 stopped by SIGTERM or SIGINT; 2 usage error (the extra
    missing, bad option); 3 cannot listen, or --observe events where events
    cannot be had.
    """
    try:
        from zombiewatch import export as exporter
    except ImportError as err:
        raise click.UsageError(
            f"export needs prometheus_client ({err.name} is missing):"
            " pip install prometheus_client (or '.[prometheus]' in a clone)"
        ) from err
    from zombiewatch import scan as scanner

    unavailable = scanner.unavailable_reason()
    if unavailable is not None:
        raise click.UsageError(unavailable)
    source = ctx.get_parameter_source
    if textfile is not None and source("listen") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("give --listen or --textfile, not both")
    if textfile is None and source("every") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--every is the interval of --textfile; give both or neither")
    try:
        address = exporter.parse_listen(listen)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--listen'") from err
    if textfile is not None and not (os.path.isdir(textfile) and os.access(textfile, os.W_OK)):
        raise click.BadParameter(
            f"{textfile!r} is not a writable directory", param_hint="'--textfile'"
        )
    blind_spot = scanner.blind_spot()
    if blind_spot is not None:
        runner.log(blind_spot)
    options = exporter.Options(
        listen=address, textfile=textfile, every=every, top=top, by_pid=pid_label, observe=observe
    )

    def ready(line: dict[str, object]) -> None:
        click.echo(json.dumps(line))
        sys.stdout.flush()

    exporter.run(options, ready, log=runner.log)
    ctx.exit(ExitCode.OK)


@cli.command("modes")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def list_modes(as_json: bool) -> None:
    """List the reaping modes, their expected verdict and availability.

    JSON: {"modes": [{"name", "expected", "available", "unavailable_reason",
    "summary"}]}, in the order of the table in the README.

    \b
    Examples:
      zombiewatch modes
      zombiewatch modes --json | jq -r '.modes[] | select(.available) | .name'

    Exit status: 0; 2 usage error.
    """
    if as_json:
        import json

        click.echo(json.dumps({"modes": [_mode_entry(name) for name in modes.names()]}, indent=2))
        return
    for name in modes.names():
        mode = modes.get(name)
        where = "available" if mode.available() else f"unavailable: {mode.unavailable_reason()}"
        click.echo(f"{name:<14} expected {mode.expected.upper():<5} {where:<10}  {mode.summary}")


def _echo(text: str) -> None:
    """Write the result to stdout; a failure is recorded (exit 3), not raised."""
    try:
        click.echo(text)
    except OSError as err:
        _text.output_lost("stdout", err)


def _open_standard_streams() -> None:
    """Put /dev/null on a closed descriptor 0, 1 or 2, and note 1 or 2 as lost.

    Otherwise the next file or pipe we open would take that number, and the
    report (or a log line) would be written into it.
    """
    _text.forget_lost_output()
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # the lowest free number: fd itself, unless a lower one is free too
                os.dup2(null, fd)
                os.close(null)
            if fd:
                _text.output_lost(name, OSError(errno.EBADF, f"{name} is closed"))
            if getattr(sys, name) is None:  # the interpreter found it closed at startup
                setattr(sys, name, open(fd, "w" if fd else "r", closefd=False))  # noqa: SIM115


def _flush_standard_streams() -> None:
    """Flush stdout and stderr now; a stream that fails is recorded and
    pointed at /dev/null, so the interpreter's last flush cannot fail too
    (which would exit 120)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as err:
            _text.output_lost(name, err)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            with contextlib.suppress(OSError, ValueError):
                stream.flush()  # what is still buffered goes to /dev/null


def _exit_code(code: int) -> int:
    """The exit status once our own output is accounted for: a result that
    could not be written in full is exit 3, never a verdict (0 or 1)."""
    _flush_standard_streams()
    lost = _text.lost_output()
    if lost and code in (ExitCode.OK, ExitCode.ZOMBIES):
        why = "; ".join(f"{stream}: {reason}" for stream, reason in lost.items())
        runner.log(f"could not write all output ({why})")
        code = ExitCode.NOT_MEASURED
        _flush_standard_streams()
    return code


def _mode_entry(name: str) -> dict[str, Any]:
    mode = modes.get(name)
    available = mode.available()
    return {
        "name": name,
        "expected": mode.expected,
        "available": available,
        "unavailable_reason": None if available else mode.unavailable_reason(),
        "summary": mode.summary,
    }


@cli.command("scripts")
@click.option("--path", "show_path", is_flag=True, help="Print only the directory that holds them.")
@click.option(
    "--write",
    "write_to",
    metavar="DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Copy them into DIR (made if missing; copies there are replaced).",
)
def scripts(show_path: bool, write_to: str | None) -> None:
    """List the shell scripts shipped with zombiewatch, or copy them out.

    ci-zero-zombies.sh is the CI gate (docs/ci.md), flood.sh a flooder
    in bash alone; zombiewatch-command.sh is sourced by the gate and goes
    with it.

    \b
    Examples:
      zombiewatch scripts --write .zombiewatch && .zombiewatch/ci-zero-zombies.sh --help
      "$(zombiewatch scripts --path)/flood.sh" 127.0.0.1 8080 500 20

    Exit status: 0; 2 usage error; 3 could not write.
    """
    from zombiewatch import _scripts

    if show_path and write_to is not None:
        raise click.UsageError("give --path or --write, not both")
    if show_path:
        click.echo(_scripts.directory())
    elif write_to is not None:
        for path in _scripts.write(write_to):
            click.echo(path)
    else:
        for name, summary in _scripts.SCRIPTS.items():
            click.echo(f"{name:<24} {summary}")
        click.echo(f"in {_scripts.directory()}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every outcome to an ``ExitCode``."""
    code: int
    _open_standard_streams()
    try:
        code = cli.main(args=argv, prog_name="zombiewatch", standalone_mode=False) or 0
    except click.UsageError as err:
        # One line, as for every other error: click's default adds usage text.
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        runner.log(f"{err.format_message()}{hint}")
        code = ExitCode.USAGE
    except click.ClickException as err:
        runner.log(err.format_message())
        code = err.exit_code
    except ZombiewatchError as err:
        runner.log(str(err))
        code = err.exit_code
    except (click.Abort, KeyboardInterrupt, Interrupted):
        runner.log("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as err:
        if _debug:
            with contextlib.suppress(OSError, ValueError):
                traceback.print_exc()
        runner.log(f"internal error: {type(err).__name__}: {err}")
        code = ExitCode.NOT_MEASURED
    sys.exit(_exit_code(code))
