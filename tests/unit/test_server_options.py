"""``--conn-timeout`` reaches the server from both commands that start it.

Checked end to end (the deadline at work) in tests/e2e/test_server_attacks.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from zombiewatch import _containment, _defaults, runner, server
from zombiewatch.cli import cli


class Started(Exception):
    """Raised where the server would start: the test has what it wanted."""


def test_serve_passes_conn_timeout_to_the_server(monkeypatch) -> None:
    started: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        started.append(argv)
        raise Started

    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Started):
        CliRunner().invoke(cli, ["serve", "--conn-timeout", "7.5"], catch_exceptions=False)
    [argv] = started
    assert json.loads(argv[-1])["conn_timeout"] == 7.5


def test_the_default_command_passes_conn_timeout_to_the_server(monkeypatch) -> None:
    configs: list[server.Config] = []

    def target(config: server.Config) -> Any:
        configs.append(config)
        raise Started

    @contextlib.contextmanager
    def no_box() -> Iterator[Any]:  # the guard is a fork: not in a unit test
        yield SimpleNamespace(guard_pid=0)

    monkeypatch.setattr(runner, "ServerTarget", target)
    monkeypatch.setattr(_containment, "contain", no_box)
    with pytest.raises(Started):
        CliRunner().invoke(
            cli, ["--mode", "sigchld", "--conn-timeout", "2.5"], catch_exceptions=False
        )
    assert [c.conn_timeout for c in configs] == [2.5]


def test_conn_timeout_defaults_to_half_a_minute() -> None:
    assert server.Config().conn_timeout == _defaults.CONN_TIMEOUT == 30.0
    assert runner.RunOptions().conn_timeout == _defaults.CONN_TIMEOUT
