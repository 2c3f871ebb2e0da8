"""The mode registry: order, names, lookup, duplicates and availability."""

from __future__ import annotations

import os

import pytest

import zombiewatch._platform
from zombiewatch import _platform, modes
from zombiewatch.modes import base
from zombiewatch.modes import pidfd as pidfd_module

# docs/DESIGN.md, Reaping modes: the table, top to bottom.
DESIGN_ORDER = [
    "none",
    "wait",
    "poll",
    "sigchld",
    "sigchld-once",
    "ignore",
    "double-fork",
    "pidfd",
    "reaper-thread",
    "thread",
]

# docs/DESIGN.md, Reaping modes: the "expected" column.
DESIGN_EXPECTED = {
    "none": "fail",
    "wait": "pass",
    "poll": "fail",
    "sigchld": "pass",
    "sigchld-once": "fail",
    "ignore": "pass",
    "double-fork": "pass",
    "pidfd": "pass",
    "reaper-thread": "pass",
    "thread": "pass",
}


def test_names_follow_the_design_table_order():
    assert modes.names() == DESIGN_ORDER


def test_names_returns_a_copy():
    names = modes.names()
    names.clear()
    assert modes.names() == DESIGN_ORDER


@pytest.mark.parametrize("name", DESIGN_ORDER)
def test_mode_name_matches_its_module_file(name):
    cls = modes.get(name)
    module_file = cls.__module__.rsplit(".", 1)[1]
    assert cls.__module__ == f"zombiewatch.modes.{module_file}"
    assert module_file.replace("_", "-") == name == cls.name


@pytest.mark.parametrize("name", DESIGN_ORDER)
def test_mode_declares_expected_summary_and_docstring(name):
    cls = modes.get(name)
    assert cls.expected in {"pass", "fail"}
    assert cls.expected == DESIGN_EXPECTED[name]
    assert isinstance(cls.summary, str)
    assert cls.summary.strip()
    assert cls.__doc__
    assert cls.__doc__.strip()
    assert cls.unavailable_reason().strip()
    assert cls.child_delay >= 0


@pytest.mark.parametrize("name", DESIGN_ORDER)
def test_every_mode_module_has_a_docstring(name):
    module = __import__(modes.get(name).__module__, fromlist=["_"])
    assert module.__doc__
    assert module.__doc__.strip()


@pytest.mark.parametrize("unknown", ["", "sigchld_once", "SIGCHLD", "all", "nope"])
def test_get_unknown_mode_raises_key_error(unknown):
    with pytest.raises(KeyError):
        modes.get(unknown)


def test_registering_a_duplicate_name_raises_and_keeps_the_registry(monkeypatch):
    monkeypatch.setattr(modes, "_REGISTRY", dict(modes._REGISTRY))
    original = modes.get("none")

    class Impostor(base.ForkingReaper):
        """Same name as an existing mode."""

        name = "none"

    with pytest.raises(ValueError, match="none"):
        modes.register(Impostor)
    assert modes.get("none") is original
    assert modes.names() == DESIGN_ORDER


def test_registering_a_new_mode_appends_it(monkeypatch):
    monkeypatch.setattr(modes, "_REGISTRY", dict(modes._REGISTRY))

    class Extra(base.ForkingReaper):
        """A mode that exists only in this test."""

        name = "extra-test-mode"

    assert modes.register(Extra) is Extra
    assert modes.get("extra-test-mode") is Extra
    assert modes.names() == [*DESIGN_ORDER, "extra-test-mode"]


def test_registry_is_restored_after_the_tests_above():
    assert modes.names() == DESIGN_ORDER
    assert "extra-test-mode" not in modes.names()


def test_pidfd_module_uses_the_platform_module():
    # The monkeypatches below rely on this being one and the same module.
    assert vars(pidfd_module)["_platform"] is _platform


@pytest.mark.parametrize("usable", [True, False])
def test_pidfd_available_follows_can_use_pidfd(monkeypatch, usable):
    # can_use_pidfd is lru_cached: replace the function, not its result.
    monkeypatch.setattr(_platform, "can_use_pidfd", lambda: usable)
    assert modes.get("pidfd").available() is usable


def test_pidfd_unavailable_reason_is_the_platform_reason():
    assert modes.get("pidfd").unavailable_reason() == _platform.pidfd_unavailable_reason()


def test_pidfd_reason_without_pidfd_open(monkeypatch):
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    assert "Linux 5.3" in _platform.pidfd_unavailable_reason()


@pytest.mark.parametrize("name", [n for n in DESIGN_ORDER if n not in ("pidfd", "thread")])
def test_forking_modes_are_available_where_fork_exists(name):
    assert modes.get(name).available() is hasattr(os, "fork")


def test_thread_mode_is_available_without_fork(monkeypatch):
    # can_use_fork() is cached, so the probe itself is replaced.
    monkeypatch.setattr(zombiewatch._platform, "can_use_fork", lambda: False)
    assert modes.get("thread").available() is True
    assert modes.get("sigchld").available() is False


@pytest.mark.parametrize(("mode", "per_pass"), [("sigchld", 64), ("pidfd", 1)])
def test_accepts_per_pass_of_the_loop(monkeypatch, mode: str, per_pass: int) -> None:
    # pidfd collects its children between passes of the loop: a batch of
    # forks would keep each exited child a zombie through the whole batch.
    from zombiewatch import server

    srv = server.Server(server.Config(mode=mode, host="127.0.0.1", port=0))
    accepted = 0

    def accept_one() -> bool:
        nonlocal accepted
        accepted += 1
        return True  # a backlog that never runs dry

    monkeypatch.setattr(srv, "_accept_one", accept_one)
    try:
        srv._accept()
    finally:
        srv.selector.close()
        os.close(srv._wakeup_r)
        os.close(srv._wakeup_w)
    assert accepted == per_pass
