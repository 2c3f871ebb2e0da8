"""CommandOutput: lines passed on prefixed, cut when too long, the last kept (#16)."""

from __future__ import annotations

import os

from zombiewatch import _output
from zombiewatch._output import CommandOutput


def _through(data: bytes, capfd) -> tuple[CommandOutput, str]:
    out = CommandOutput("prog")
    writer = os.dup(out.writer())  # the program's copy
    out.started(4242)
    out.pass_on()
    os.write(writer, data)
    os.close(writer)
    out.finish()
    return out, capfd.readouterr().err


def test_each_line_is_prefixed_and_an_unfinished_last_line_is_passed_on(capfd) -> None:
    out, err = _through(b"one\ntwo\nlast without newline", capfd)
    assert err == "prog[4242]: one\nprog[4242]: two\nprog[4242]: last without newline\n"
    assert out.tail() == ["one", "two", "last without newline"]


def test_only_the_last_lines_are_kept_each_clipped(capfd) -> None:
    lines = [f"line {i} " + "x" * 1000 for i in range(50)]
    out, err = _through("\n".join(lines).encode() + b"\n", capfd)
    assert err.count("\n") == 50
    tail = out.tail()
    assert len(tail) == _output.TAIL_LINES
    assert tail[-1].startswith("line 49 ")
    assert all(len(line) <= _output.TAIL_WIDTH for line in tail)


def test_a_line_longer_than_the_limit_is_passed_on_in_pieces(capfd) -> None:
    _out, err = _through(b"y" * (3 * _output.MAX_LINE), capfd)
    assert err.replace("prog[4242]: ", "").replace("\n", "") == "y" * (3 * _output.MAX_LINE)
    assert err.count("\n") >= 3


def test_a_file_gets_the_output_as_it_is(tmp_path) -> None:
    path = tmp_path / "cmd.log"
    out = CommandOutput("prog", str(path))
    os.write(out.writer(), b"a\nb\n")
    out.started(1)
    out.finish()
    assert path.read_bytes() == b"a\nb\n"
    assert out.tail() == ["a", "b"]
