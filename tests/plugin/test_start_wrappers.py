"""The recorder's wrappers of the standard library's process-starting
functions (#21): each start is recorded once, with what the message shows,
and the caller gets the same result or error as without them.

Each case runs in a fresh interpreter: the wrappers stay for the life of a
process, and this one's are the outer session's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, pty, subprocess, sys

    from zombiewatch import _starts

    rec = _starts.recorder(os.getcwd())
    out = {}

    def starts():
        found = [(s.kind, s.what, s.pid, s.frames[0][2] if s.frames else "") for s in rec.starts]
        rec.starts.clear()
        return found

    def collect(pid):
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def case(name, call):
        rec.begin()
        try:
            result = call()
        except Exception as err:
            result = type(err).__name__
        rec.end()
        out[name] = {"result": result, "starts": starts()}

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        return [pid, collect(pid)]

    def forkpty():
        pid, fd = pty.fork()
        if pid == 0:
            os._exit(5)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # closing first may end it
        os.close(fd)
        return [pid, collect(pid)]

    def spawn():
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 4"], os.environ)
        return [pid, collect(pid)]

    def popen(*args, **kwargs):
        p = subprocess.Popen(*args, **kwargs)
        return [p.pid, p.wait()]

    case("fork", fork)
    case("forkpty", forkpty)
    case("posix_spawn", spawn)
    case("spawnp", lambda: collect(os.posix_spawnp("true", ["true"], os.environ)))
    case("system", lambda: os.waitstatus_to_exitcode(os.system("exit 3")))
    case("system_bytes", lambda: os.waitstatus_to_exitcode(os.system(command=b"true")))
    case("popen", lambda: popen(["sh", "-c", "exit 2"]))
    case("popen_iterator", lambda: popen(iter(["true"])))
    case("popen_shell", lambda: popen("exit 6", shell=True))
    case("popen_preexec", lambda: popen(["true"], preexec_fn=os.getpid))
    case("popen_missing", lambda: popen(["/nonexistent/zombiewatch-test"]))
    case("popen_bad_args", lambda: popen(42))
    # Outside a guarded test: nothing is recorded.
    out["idle"] = {"result": [popen(["true"])[1], fork()[1]], "starts": starts()}
    out["names"] = [os.system.__name__, os.posix_spawn.__name__, os.forkpty.__name__]
    print(json.dumps(out))
    """
)


def run_cases(tmp_path) -> dict:
    # From a file: the recorder keeps no frame of "<string>".
    script = tmp_path / "cases.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def test_each_start_is_recorded_once_and_its_result_passes_through(tmp_path) -> None:
    out = run_cases(tmp_path)

    def only(name: str) -> tuple[str, str, int, str]:
        [start] = out[name]["starts"]
        return tuple(start)

    # A fork: the child's exit status, and its pid in the record.
    pid, status = out["fork"]["result"]
    assert status == 7
    assert only("fork") == ("os.fork", "os.fork()", pid, "fork")
    pid, status = out["forkpty"]["result"]
    assert status == 5
    assert only("forkpty") == ("os.forkpty", "os.forkpty()", pid, "forkpty")
    # posix_spawn: the pid returned; matched later by name and time, as before.
    pid, status = out["posix_spawn"]["result"]
    assert status == 4
    assert pid > 0
    assert only("posix_spawn") == (
        "os.posix_spawn",
        "os.posix_spawn('/bin/sh', ['sh', '-c', 'exit 4'])",
        0,
        "spawn",
    )
    assert out["spawnp"]["result"] == 0
    assert only("spawnp")[1] == "os.posix_spawn('true', ['true'])"
    assert out["system"]["result"] == 3
    assert only("system")[:2] == ("os.system", "os.system('exit 3')")
    assert out["system_bytes"]["result"] == 0
    assert only("system_bytes")[1] == "os.system('true')"
    # Popen: the pid from the object, argv as Popen makes it.
    pid, status = out["popen"]["result"]
    assert status == 2
    assert only("popen") == (
        "subprocess.Popen",
        "subprocess.Popen(['sh', '-c', 'exit 2'])",
        pid,
        "popen",
    )
    assert out["popen_iterator"]["result"][1] == 0  # the iterator was read once, by Popen
    assert only("popen_iterator")[1] == "subprocess.Popen(['true'])"
    assert out["popen_shell"]["result"][1] == 6
    assert only("popen_shell")[1] == "subprocess.Popen(['/bin/sh', '-c', 'exit 6'])"
    # preexec_fn makes Popen fork through the fork callbacks: still one record.
    pid, status = out["popen_preexec"]["result"]
    assert status == 0
    assert only("popen_preexec")[:3] == ("subprocess.Popen", "subprocess.Popen(['true'])", pid)
    # A start that fails leaves no record (no child outlives it) and the same error.
    assert out["popen_missing"] == {"result": "FileNotFoundError", "starts": []}
    assert out["popen_bad_args"] == {"result": "TypeError", "starts": []}
    assert out["idle"] == {"result": [0, 7], "starts": []}
    assert out["names"] == ["system", "posix_spawn", "forkpty"]
