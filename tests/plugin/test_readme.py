"""The README's plugin example is what the plugin prints for that test (#17)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> tuple[str, list[str]]:
    """The plugin section's example test and the output shown for it."""
    section = README.read_text().split("## In your tests: the pytest plugin")[1]
    code = section.split("```python\n")[1].split("```")[0]
    shown = section.split("ends with:\n\n```\n")[1].split("```")[0]
    return code, shown.splitlines()


def as_pattern(line: str) -> re.Pattern[str]:
    """A line of the README with what varies between runs left open: pids,
    ages, the width of pytest's rule, the parent's command line, and which
    look first saw the zombie."""
    for rule in "_=":
        if line.startswith(rule):
            title = numbers_open(line.strip(f"{rule} "))
            return re.compile(rf"{rule}+ {title} {rule}+$")
    if "its parent's: " in line:
        line = line.split("its parent's: ")[0] + "its parent's: "
        return re.compile(re.escape(line) + ".*python.*pytest.*")
    if line.strip().startswith("started at "):
        return re.compile(re.escape(line) + "$")  # the example's own line: exactly
    pattern = numbers_open(line)
    # Which look first saw `true` exited is a race.
    pattern = re.sub(r"not\\ one\\ yet\\ .*?(?=\\\))", "not one yet [^)]*", pattern)
    return re.compile(pattern + "$")


def numbers_open(text: str) -> str:
    """``text`` as a pattern in which each number may be any number."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return "".join(r"\d+(?:\.\d+)?" if i % 2 else re.escape(p) for i, p in enumerate(parts))


def test_the_readme_example_is_what_the_plugin_prints(pytester, run, monkeypatch) -> None:
    from zombiewatch import observe

    if observe.events_unavailable_reason() is not None:
        pytest.skip("the README shows the message with kernel events")
    code, shown = readme_example()
    pytester.makepyfile(test_popen=code)
    # The README's width: pytest cuts the short summary's line to it.
    monkeypatch.setenv("COLUMNS", "80")
    # ... but not on a CI machine: pytest prints the line whole when CI or
    # BUILD_NUMBER is set (_pytest.assertion.util.running_on_ci).
    for name in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(name, raising=False)

    result = run("--zombiewatch")

    result.assert_outcomes(passed=1, errors=1)
    out = result.outlines
    start = next(i for i, line in enumerate(out) if as_pattern(shown[0]).match(line))
    # Line for line, in order, to the last line of the output ("ends with").
    assert len(out) - start == len(shown), out[start:]
    for offset, line in enumerate(shown):
        assert as_pattern(line).match(out[start + offset]), (line, out[start + offset])
