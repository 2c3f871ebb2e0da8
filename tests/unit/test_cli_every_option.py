"""Every option of every command refuses bad values: exit 2, one line.

The cases are generated from the commands' own parameters, so an option
added later is checked without anyone remembering to add a case.
"""

from __future__ import annotations

import math

import click
import pytest

from zombiewatch.cli import cli, main

# What each command needs besides the option under test to get past
# parsing: a bad value must be the only reason for the usage error.
REQUIRED = {
    "": [],
    "serve": [],
    "flood": ["--port", "9"],
    "run": ["--", "true"],
    "watch": ["1"],
    "modes": [],
    "scan": [],
    "scripts": [],
    "export": [],
}


def _bad_values(param: click.Option) -> list[str]:
    kind = param.type
    bad = ["not-a-number"] if isinstance(kind, click.types._NumberParamTypeBase) else []
    if isinstance(kind, click.types._NumberRangeBase):
        if kind.min is not None and math.isfinite(kind.min):
            bad.append(str(kind.min - 1))
        if kind.max is not None and math.isfinite(kind.max):
            bad.append(str(kind.max + 1))
    if isinstance(kind, click.FloatRange):
        bad += ["nan", "inf"]
    if isinstance(kind, click.Choice):
        bad.append("no-such-choice")
    if param.name == "host":
        bad.append("")
    return bad


def _cases() -> list[tuple[str, str, str]]:
    commands = {"": cli, **cli.commands}
    cases = []
    for name, command in commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag and not param.hidden:
                for value in _bad_values(param):
                    cases.append((name, param.opts[-1] if param.opts else param.name, value))
    return cases


CASES = _cases()


def test_every_command_is_covered() -> None:
    commands = {name for name, _opt, _value in CASES}
    assert commands >= {"", "serve", "flood", "run", "watch"}
    assert set(REQUIRED) >= set(cli.commands) | {""}


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_bad_value_is_a_usage_error(capsys, command: str, option: str, value: str) -> None:
    args = [command] if command else []
    args += [f"{option}={value}"]
    if command == "run":
        args = ["run", f"{option}={value}", "--", "true"]
    elif option not in REQUIRED[command]:  # a later --port 9 would win
        args += REQUIRED[command]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
