"""The ``zombiewatch`` command: a click group, and the sole owner of exit codes.

``zombiewatch --mode MODE`` (no subcommand) runs the server in MODE under a
flood with the monitor watching and exits 0 only if no zombie leaked.
Subcommands expose the parts: ``serve``, ``flood``, ``modes``. Results go
to stdout, logs and errors to stderr, one line each.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from typing import Any, NoReturn

import click

from zombiewatch import __version__, modes, runner, server
from zombiewatch.errors import ExitCode, Interrupted

_debug = False


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


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--mode",
    type=click.Choice([*modes.names(), "all"]),
    default="sigchld",
    show_default=True,
    help=MODE_HELP + " `all` runs every available mode in turn.",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1, max=10_000_000),
    default=1000,
    show_default=True,
    help="Connections to open in all.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=10_000),
    default=50,
    show_default=True,
    help="Connections open at once.",
)
@click.option(
    "--lines",
    type=click.IntRange(min=1, max=100_000),
    default=1,
    show_default=True,
    help="Lines sent on each connection.",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0, max=3600),
    default=1.0,
    show_default=True,
    help="Seconds after the flood before zombies count as leaked.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.001, max=60),
    default=0.01,
    show_default=True,
    help="Seconds between two samples of the process tree.",
)
@click.option(
    "--child-delay",
    type=click.FloatRange(min=0, max=60),
    default=None,
    help="Keep each child alive after it replies, up to the next multiple of this"
    " many seconds, so children exit in bursts. [default: the mode's, 0.02 s;"
    " 0 for wait]",
)
@click.option(
    "--max-children",
    type=click.IntRange(min=1),
    default=None,
    help="Live children the server allows at once.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.01, max=3600),
    default=10.0,
    show_default=True,
    help="Seconds each connection may take.",
)
@click.option(
    "--check", is_flag=True, help="Exit 0 when every mode met its expected verdict, 1 otherwise."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
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
def cli(ctx: click.Context, /, mode: str, check: bool, as_json: bool, **options: Any) -> None:
    """Find the zombie processes a forking server leaves behind.

    Without a command: start the built-in fork-per-connection server in
    MODE, flood it with connections while a psutil monitor watches its
    process tree, and report. Exit status: 0 no zombie leaked; 1 zombies
    leaked (with --check: a mode missed its expected verdict); 2 usage
    error; 3 could not measure; 130 interrupted.
    """
    if ctx.invoked_subcommand is not None:
        return
    names = modes.names() if mode == "all" else [_available(mode)]
    report = runner.run(names, runner.RunOptions(**options), check=check)
    click.echo(report.to_json() if as_json else report.render())
    for run in report.runs:
        if run.flood.get("failed"):
            runner._log(
                f"{run.mode}: {run.flood['failed']} connection(s) failed: {run.flood['failures']}"
            )
    ctx.exit(report.return_code)


@cli.command()
@click.option(
    "--mode", type=click.Choice(modes.names()), default="sigchld", show_default=True, help=MODE_HELP
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback echoes for anyone.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--max-children",
    type=click.IntRange(min=1),
    default=None,
    help="Live children allowed at once; more clients wait in the backlog.",
)
@click.option("--child-delay", type=click.FloatRange(min=0, max=60), default=0.0,
              show_default=True, help="Keep each child alive after it replies, up to the next"
              " multiple of this many seconds.")  # fmt: skip
def serve(mode: str, host: str, port: int, max_children: int | None, child_delay: float) -> None:
    """Run the fork-per-connection uppercase server in the foreground.

    Prints one JSON line when it listens: {"event": "listening", "host",
    "port", "pid", "mode"}. SIGTERM or Ctrl-C stops it.
    """
    _available(mode)
    config = server.Config(
        mode=mode, host=host, port=port, max_children=max_children, child_delay=child_delay
    )
    argv = server.command(config)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not import: the forking process must not carry click (FACTS.md).
    os.execv(argv[0], argv)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Server address.")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Server port.")
@click.option(
    "--connections",
    type=click.IntRange(min=1, max=10_000_000),
    default=1000,
    show_default=True,
    help="Connections to open in all.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=10_000),
    default=50,
    show_default=True,
    help="Connections open at once.",
)
@click.option(
    "--lines",
    type=click.IntRange(min=1, max=100_000),
    default=1,
    show_default=True,
    help="Lines sent on each connection.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.01, max=3600),
    default=10.0,
    show_default=True,
    help="Seconds each connection may take.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0.1, max=86400),
    default=None,
    help="Seconds the whole flood may take.  [default: 60 + 0.05 per connection]",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_context
def flood(ctx: click.Context, host: str, port: int, connections: int, concurrency: int,
          lines: int, timeout: float, deadline: float | None, as_json: bool) -> None:  # fmt: skip
    """Flood a line server with connections and check every reply.

    Each connection sends LINES lines and expects them back in upper case.
    Exit status 0 when every connection got its right answer, 1 otherwise.
    """
    import json

    from zombiewatch import flood as flooder  # asyncio: only this command needs it

    if deadline is None:
        deadline = runner.RunOptions(connections=connections).flood_deadline
    try:
        result = flooder.flood(host, port, connections, concurrency, lines, timeout, deadline)
    except socket.gaierror as err:
        raise click.BadParameter(
            f"cannot resolve {host!r}: {err.strerror}", param_hint="'--host'"
        ) from err
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data))
    else:
        lat = data["latency_ms"]
        failures = ", ".join(f"{n} {why}" for why, n in result.failures.items())
        click.echo(
            f"{result.ok} ok, {result.failed} failed{f' ({failures})' if failures else ''};"
            f" {data['conn_per_s']:.0f} conn/s; latency p50 {lat['p50']} ms, p99 {lat['p99']} ms"
        )
    ctx.exit(ExitCode.OK if result.failed == 0 else ExitCode.ZOMBIES)


@cli.command("modes")
def list_modes() -> None:
    """List the reaping modes, their expected verdict and availability."""
    for name in modes.names():
        mode = modes.get(name)
        where = "available" if mode.available() else f"unavailable: {mode.unavailable_reason()}"
        click.echo(f"{name:<14} expected {mode.expected.upper():<5} {where:<10}  {mode.summary}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every outcome to an ``ExitCode``."""
    code: int
    try:
        code = cli.main(args=argv, prog_name="zombiewatch", standalone_mode=False) or 0
    except click.UsageError as err:
        # One line, as for every other error: click's default adds usage text.
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        click.echo(f"zombiewatch: {err.format_message()}{hint}", err=True)
        code = ExitCode.USAGE
    except click.ClickException as err:
        click.echo(f"zombiewatch: {err.format_message()}", err=True)
        code = err.exit_code
    except (click.Abort, KeyboardInterrupt, Interrupted):
        click.echo("zombiewatch: interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except Exception as err:
        if _debug:
            traceback.print_exc()
        click.echo(f"zombiewatch: internal error: {type(err).__name__}: {err}", err=True)
        code = ExitCode.NOT_MEASURED
    sys.exit(code)
