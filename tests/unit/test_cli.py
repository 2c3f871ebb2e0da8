"""The CLI's usage errors, exit codes and one-line error messages (no forking).

Every case here fails before anything is started; an autouse fixture makes
sure of it by turning ``runner.run`` and ``os.execv`` into test failures.
"""

from __future__ import annotations

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
    pytest.param(["--plot", "report.txt"], "--plot", id="plot-not-png"),
    pytest.param(["run", "--plot", "report", "--", "true"], "--plot", id="run-plot-no-suffix"),
    pytest.param(["serve", "--port", "-1"], "--port", id="serve-negative-port"),
    pytest.param(["serve", "--port", "65536"], "--port", id="serve-port-too-big"),
    pytest.param(["serve", "--mode", "all"], "all", id="serve-mode-all"),
    pytest.param(["serve", "--mode", "nope"], "nope", id="serve-unknown-mode"),
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
