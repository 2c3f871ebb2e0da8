"""The CLI's usage errors, exit codes and one-line error messages (no forking).

Every case here fails before anything is started; an autouse fixture makes
sure of it by turning ``runner.run`` and ``os.execv`` into test failures.
"""

from __future__ import annotations

import json
import os

import click
import pytest
from click.testing import CliRunner

import zombiewatch
from zombiewatch import cli as cli_module
from zombiewatch import modes, runner, server
from zombiewatch.cli import cli
from zombiewatch.errors import ExitCode


class MustNotRun(AssertionError):
    """A usage error was expected before the CLI started any process."""


@pytest.fixture(autouse=True)
def no_processes(monkeypatch):
    def refuse(*args, **kwargs):
        raise MustNotRun(f"the CLI tried to start something: {args!r}")

    monkeypatch.setattr(runner, "run", refuse)
    monkeypatch.setattr(os, "execv", refuse)
    monkeypatch.setattr(cli_module, "_debug", False)


@pytest.fixture
def pidfd_unavailable(monkeypatch):
    monkeypatch.setattr(modes.get("pidfd"), "available", classmethod(lambda cls: False))
    monkeypatch.setattr(
        modes.get("pidfd"), "unavailable_reason", classmethod(lambda cls: "no pidfds in this test")
    )


def invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def run_main(capsys, args):
    """Call ``cli.main`` as the console script does; return (code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        cli_module.main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def assert_one_error_line(err):
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zombiewatch: ")
    assert err.endswith("\n")


USAGE_ERRORS = [
    pytest.param(["--mode", "no-such-mode"], "no-such-mode", id="unknown-mode"),
    pytest.param(["--connections", "-5"], "--connections", id="negative-connections"),
    pytest.param(["--connections", "0"], "--connections", id="zero-connections"),
    pytest.param(["--interval", "0"], "--interval", id="zero-interval"),
    pytest.param(["--concurrency", "0"], "--concurrency", id="zero-concurrency"),
    pytest.param(["--settle", "-1"], "--settle", id="negative-settle"),
    pytest.param(["--no-such-option"], "--no-such-option", id="unknown-option"),
    pytest.param(["no-such-command"], "no-such-command", id="unknown-command"),
    pytest.param(["flood"], "--port", id="flood-without-port"),
    pytest.param(["flood", "--port", "70000"], "--port", id="flood-port-too-big"),
    pytest.param(["flood", "--port", "0"], "--port", id="flood-port-zero"),
    pytest.param(["flood", "--port", "9", "--connections", "0"], "--connections", id="flood-0"),
    pytest.param(["--plot", "report.txt"], "--plot", id="plot-not-an-image"),
    pytest.param(["run", "--plot", "report", "--", "true"], "--plot", id="run-plot-no-suffix"),
    pytest.param(["serve", "--port", "-1"], "--port", id="serve-negative-port"),
    pytest.param(["serve", "--port", "65536"], "--port", id="serve-port-too-big"),
    pytest.param(["serve", "--mode", "all"], "all", id="serve-mode-all"),
    pytest.param(["serve", "--mode", "nope"], "nope", id="serve-unknown-mode"),
    # Options of the default command before a subcommand were silently dropped (#20).
    pytest.param(["--json", "modes"], "'zombiewatch modes --json ...'", id="json-before-modes"),
    pytest.param(
        ["--mode", "none", "--connections", "5", "scan"],
        "--mode and --connections before 'scan' would be ignored",
        id="mode-before-scan",
    ),
    pytest.param(
        ["--settle", "2", "watch", "1"],
        "'zombiewatch watch --settle ...'",
        id="settle-before-watch",
    ),
    pytest.param(["--check", "run", "--", "true"], "'run' has no --check", id="check-before-run"),
    pytest.param(["watch", ""], "no PID given", id="watch-empty-pid"),
    pytest.param(["watch", "  "], "no PID given", id="watch-blank-pid"),
    pytest.param(
        ["run", "--ready-timeout", "30", "--", "true"],
        "--wait-port or --flood",
        id="ready-timeout-without-port",
    ),
    pytest.param(["scripts", "--path", "--write", "x"], "not both", id="scripts-path-and-write"),
]


@pytest.mark.parametrize(("args", "mentions"), USAGE_ERRORS)
def test_usage_error_exits_2_through_click(args, mentions):
    result = invoke(args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert mentions in result.output


@pytest.mark.parametrize(("args", "mentions"), USAGE_ERRORS)
def test_usage_error_from_main_is_one_line(capsys, args, mentions):
    code, out, err = run_main(capsys, args)
    assert code == ExitCode.USAGE
    assert out == ""
    assert_one_error_line(err)
    assert mentions in err


@pytest.mark.parametrize("prefix", [[], ["serve"]], ids=["default", "serve"])
def test_unavailable_mode_is_a_usage_error_with_the_reason(pidfd_unavailable, prefix):
    result = invoke([*prefix, "--mode", "pidfd"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "no pidfds in this test" in result.output
    assert "pidfd" in result.output


@pytest.mark.parametrize("prefix", [[], ["serve"]], ids=["default", "serve"])
def test_unavailable_mode_from_main_is_one_line(capsys, pidfd_unavailable, prefix):
    code, out, err = run_main(capsys, [*prefix, "--mode", "pidfd"])
    assert code == ExitCode.USAGE
    assert out == ""
    assert_one_error_line(err)
    assert "'pidfd' is not available here: no pidfds in this test" in err


def test_unresolvable_flood_host_is_a_usage_error(capsys):
    # .invalid never resolves (RFC 6761); no traffic goes anywhere.
    code, out, err = run_main(capsys, ["flood", "--host", "no.such.host.invalid", "--port", "9"])
    assert code == ExitCode.USAGE
    assert out == ""
    assert_one_error_line(err)
    assert "no.such.host.invalid" in err


def test_modes_lists_every_mode_once():
    result = invoke(["modes"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert listed == modes.names()


def test_modes_shows_expected_verdicts_and_availability(pidfd_unavailable):
    lines = {line.split()[0]: line for line in invoke(["modes"]).output.splitlines()}
    assert "expected FAIL" in lines["none"]
    assert "expected PASS" in lines["sigchld"]
    assert "unavailable: no pidfds in this test" in lines["pidfd"]
    assert "unavailable" not in lines["thread"]


def test_modes_from_main_exits_0(capsys):
    code, out, err = run_main(capsys, ["modes"])
    assert code == 0
    assert err == ""
    assert len(out.splitlines()) == len(modes.names())


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    result = invoke([flag])
    assert result.exit_code == 0
    assert zombiewatch.__version__ in result.output


def test_version_from_main(capsys):
    code, out, _err = run_main(capsys, ["--version"])
    assert code == 0
    assert zombiewatch.__version__ in out


@pytest.mark.parametrize(
    "args", [["--help"], ["-h"], ["serve", "--help"], ["flood", "--help"], ["modes", "--help"]]
)
def test_help_exits_0(args):
    result = invoke(args)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_help_from_main_exits_0(capsys):
    code, out, err = run_main(capsys, ["--help"])
    assert code == 0
    assert "Usage:" in out
    assert err == ""


def test_mode_choice_offers_every_mode_and_all():
    option = next(p for p in cli.params if p.name == "mode")
    assert isinstance(option.type, click.Choice)
    assert list(option.type.choices) == [*modes.names(), "all"]


def test_internal_error_exits_3_with_one_line(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(modes, "names", broken)  # what `modes` calls first
    code, out, err = run_main(capsys, ["modes"])
    assert code == ExitCode.NOT_MEASURED
    assert out == ""
    assert_one_error_line(err)
    assert "internal error: RuntimeError: boom" in err


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modes, "names", interrupted)
    code, _out, err = run_main(capsys, ["modes"])
    assert code == ExitCode.INTERRUPTED
    assert "Traceback" not in err
    # click writes one empty line first, to end the terminal's "^C" echo.
    assert [line for line in err.splitlines() if line] == ["zombiewatch: interrupted"]


def test_server_exit_code_matches_the_contract():
    assert server.EXIT_NOT_MEASURED == ExitCode.NOT_MEASURED


def test_exit_codes_are_the_documented_numbers():
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 130]


# -- refused before anything starts (#15, #16) -----------------------------------


@pytest.fixture
def no_run_command(monkeypatch):
    def refuse(*args, **kwargs):
        raise MustNotRun(f"the CLI tried to run something: {args!r}")

    monkeypatch.setattr(runner, "run_command", refuse)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flood", "no.such.host.invalid:80"], "cannot resolve 'no.such.host.invalid'"),
        (["--wait-port", "no.such.host.invalid:80"], "cannot resolve 'no.such.host.invalid'"),
        (["--flood", "::1:80"], "put an IPv6 address in brackets, [::1]:80"),
        (["--junit-xml", ""], "the file name is empty"),
        (["--junit-xml", "/"], "is a directory"),
        (["--junit-xml", "/proc/version"], "cannot write '/proc/version'"),
        (["--junit-xml", "/no/such/dir/x.xml"], "no writable directory"),
        (["--max-failed", "x"], "is not a count (N) or a percentage (P%)"),
        (["--max-failed", "101%"], "a percentage 0-100%"),
        (["--max-failed", "-1"], "a count >= 0"),
    ],
)
def test_run_refuses_before_starting_anything(capsys, no_run_command, args, message):
    code, out, err = run_main(capsys, ["run", *args, "--", "true"])
    assert code == ExitCode.USAGE
    assert out == ""
    assert_one_error_line(err)
    assert message in err


@pytest.mark.parametrize(
    ("value", "address"),
    [("8080", ("127.0.0.1", 8080)), ("[::1]:8080", ("::1", 8080)),
     ("localhost:9", ("localhost", 9)), ("127.0.0.1:1", ("127.0.0.1", 1))],
)  # fmt: skip
def test_addresses_are_parsed_and_resolved(value, address):
    assert cli_module._address(value, "'--flood'") == address


@pytest.mark.parametrize(
    ("value", "budget"),
    [("0", (0, False)), ("12", (12, False)), ("2.5%", (2.5, True)), ("100%", (100.0, True))],
)
def test_max_failed_is_a_count_or_a_percentage(value, budget):
    assert cli_module.FailureBudget().convert(value, None, None) == budget


def test_debug_may_come_before_a_command(capsys):
    # --debug is for every command (it shows tracebacks); it is not refused.
    code, out, _err = run_main(capsys, ["--debug", "modes"])
    assert code == 0
    assert out.startswith("none ")


def test_modes_json_lists_every_mode(pidfd_unavailable):
    result = invoke(["modes", "--json"])
    assert result.exit_code == 0
    listed = json.loads(result.output)["modes"]
    assert [entry["name"] for entry in listed] == modes.names()
    pidfd = next(entry for entry in listed if entry["name"] == "pidfd")
    assert pidfd["available"] is False
    assert pidfd["unavailable_reason"] == "no pidfds in this test"
    none = listed[0]
    assert none["expected"] == "fail"
    assert none["available"] is True
    assert none["unavailable_reason"] is None
    assert none["summary"] == modes.get("none").summary


@pytest.mark.parametrize("name", ["", *sorted(cli.commands)])
def test_every_help_has_examples_and_exit_status(name):
    result = invoke([name, "--help"] if name else ["--help"])
    assert result.exit_code == 0
    help_text = result.output
    assert "Examples:" in help_text
    examples = help_text.split("Examples:")[1].split("\n\n")[0].splitlines()[1:]
    assert 2 <= len(examples) <= 3, help_text
    assert all(line.strip().startswith(("zombiewatch", '"$(zombiewatch')) for line in examples)
    assert "Exit status: 0" in help_text


def test_watch_settle_help_speaks_of_the_watch_not_a_load():
    result = invoke(["watch", "--help"])
    settle = result.output.split("--settle")[1].split("--observe")[0]
    assert "watch ends" in " ".join(settle.split())


def test_run_ready_timeout_reaches_the_runner(monkeypatch):
    seen: dict[str, object] = {}

    def run_command(argv, opts, flood_addr, load, port_addr):
        seen.update(argv=argv, ready_timeout=opts.ready_timeout, port=port_addr)
        raise MustNotRun("stopped at the runner, as planned")

    monkeypatch.setattr(runner, "run_command", run_command)
    with pytest.raises(MustNotRun):
        invoke(["run", "--wait-port", "8080", "--ready-timeout", "90", "--", "true"])
    assert seen == {"argv": ["true"], "ready_timeout": 90.0, "port": ("127.0.0.1", 8080)}
    with pytest.raises(MustNotRun):
        invoke(["run", "--wait-port", "8080", "--", "true"])
    assert seen["ready_timeout"] == runner.RunOptions().ready_timeout == 10.0


def test_scripts_path_holds_every_shipped_script():
    result = invoke(["scripts", "--path"])
    assert result.exit_code == 0
    where = result.output.strip()
    for name in ("ci-zero-zombies.sh", "flood.sh", "zombiewatch-command.sh"):
        assert os.path.isfile(os.path.join(where, name))
    assert os.access(os.path.join(where, "flood.sh"), os.X_OK)


def test_scripts_write_copies_them_out_and_replaces_old_copies(tmp_path):
    dest = tmp_path / "ci" / "zw"
    dest.mkdir(parents=True)
    (dest / "flood.sh").write_text("old")
    result = invoke(["scripts", "--write", str(dest)])
    assert result.exit_code == 0
    assert sorted(os.listdir(dest)) == ["ci-zero-zombies.sh", "flood.sh", "zombiewatch-command.sh"]
    assert result.output.splitlines() == [str(dest / name) for name in sorted(os.listdir(dest))]
    shipped = invoke(["scripts", "--path"]).output.strip()
    for name in os.listdir(dest):
        with open(os.path.join(shipped, name)) as original:
            assert (dest / name).read_text() == original.read()
    assert os.access(dest / "ci-zero-zombies.sh", os.X_OK)
    assert not os.access(dest / "zombiewatch-command.sh", os.X_OK)  # sourced, not run


def test_scripts_write_where_it_cannot_is_exit_3(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _out, err = run_main(capsys, ["scripts", "--write", str(blocker / "sub")])
    assert code == ExitCode.NOT_MEASURED
    assert_one_error_line(err)
    assert f"cannot write {blocker / 'sub'}" in err
