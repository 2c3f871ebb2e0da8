"""`zombiewatch run --pid1`: real programs as PID 1 of their own PID
namespace, with and without tini, and nothing left behind."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from tests.helpers import PYTHON, call_until, zombiewatch
from zombiewatch import _namespace, server

HERE = Path(__file__).resolve().parent / "pid1"
DAEMON = str(HERE / "daemon.py")
ENTRYPOINT = str(HERE / "entrypoint.sh")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating PID namespaces needs root"),
]
needs_tini = pytest.mark.skipif(
    shutil.which("tini") is None, reason="tini is not installed (.ci/run installs it with apt)"
)


def _pid1(*args: str, tag: str) -> tuple[int, dict, str]:
    """Run ``run --pid1 --json ARGS``; return its exit, report and stderr.
    Then check that no process of the run is left, in or out of the namespace."""
    proc = zombiewatch(
        "run", "--pid1", "--json", "--observe", "events", "--settle", "0.5",
        "--stop-timeout", "2", *args,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    _assert_gone(tag)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(tag in arg for arg in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _assert_gone(tag: str) -> None:
    # Every process a test starts carries its tag in its command line; a
    # zombie has none, but nothing of the namespace can be one once its
    # PID 1 is reaped (the kernel reaps them before PID 1 is a zombie).
    call_until(lambda: not _tagged(tag), 10, what=f"the processes tagged {tag} to be gone")


def _check(run: dict, name: str) -> dict:
    return next(check for check in run["checks"] if check["name"] == name)


def _exec_sleep(tag: str) -> str:
    """A Python entrypoint that starts the daemon, then execs a long sleep:
    the sleep, as PID 1, never collects anything."""
    return (
        f"import os, subprocess; subprocess.run([{PYTHON!r}, {DAEMON!r}, '0.3', {tag!r}]);"
        f" os.execvp('sleep', ['sleep', '1000'])"
    )


def test_shell_entrypoint_collects_the_daemons_orphan():
    tag = f"zw-{uuid.uuid4().hex}"
    code, report, _err = _pid1("--duration", "2.5", "--", ENTRYPOINT, tag, tag=tag)
    run = report["runs"][0]
    orphans = _check(run, "orphans")
    assert orphans["verdict"] == "pass", orphans
    assert orphans["orphaned"] >= 1, orphans
    assert orphans["collected"] == orphans["orphaned"], orphans
    assert orphans["method"] == "events"
    # A shell without a trap ignores SIGTERM as PID 1.
    sigterm = _check(run, "SIGTERM")
    assert sigterm["verdict"] == "fail", sigterm
    assert sigterm["text"] == (
        "entrypoint.sh ignores SIGTERM as PID 1: `docker stop` will wait 2 s then kill it"
    )
    assert code == 1
    # Host pids, each with its pid inside: PID 1 is 1 there.
    assert 1 in run["ns_pids"].values()


@pytest.mark.parametrize("observe", ["events", "sample"])
def test_python_that_execs_a_sleep_never_collects_the_orphan(observe):
    tag = f"zw-{uuid.uuid4().hex}"
    code, report, _err = _pid1(
        "--observe", observe, "--duration", "2", "--", PYTHON, "-c", _exec_sleep(tag), tag=tag
    )
    run = report["runs"][0]
    orphans = _check(run, "orphans")
    assert orphans["method"] == observe
    assert orphans["verdict"] == "fail", orphans
    assert orphans["uncollected"] >= 1, orphans
    assert orphans["collected"] == 0, orphans
    # The zombie under PID 1 is leaked, whether or not a sample saw it orphaned.
    assert run["leaked"] >= 1
    assert orphans["text"].endswith(
        "add an init (tini, dumb-init, `docker run --init`) or reap in CMD"
    )
    if observe == "sample":
        # Samples rarely see the orphan leave its first parent: the text
        # says what is left under PID 1, not how many were orphaned.
        assert orphans["text"].startswith("1 zombie(s) still under PID 1 after "), orphans
    root = next(pid for pid, ns in run["ns_pids"].items() if ns == 1)
    held = [z for z in run["leaked_zombies"] if str(z["ppid"]) == root]
    assert held, run["leaked_zombies"]
    assert all(run["ns_pids"][str(z["pid"])] > 1 for z in held)
    assert code == 1


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("import time; time.sleep(1000)", "fail"),
        (
            "import signal, sys, time;"
            " signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(1000)",
            "pass",
        ),
    ],
    ids=["no-handler", "handler"],
)
def test_python_entrypoint_and_sigterm(code, verdict):
    tag = f"zw-{uuid.uuid4().hex}"
    exit_code, report, _err = _pid1(
        "--duration", "1", "--", PYTHON, "-c", f"{code}  # {tag}", tag=tag
    )
    sigterm = _check(report["runs"][0], "SIGTERM")
    assert sigterm["verdict"] == verdict, sigterm
    name = os.path.basename(PYTHON)
    if verdict == "fail":
        assert sigterm["text"] == (
            f"{name} ignores SIGTERM as PID 1: `docker stop` will wait 2 s then kill it"
        )
        assert exit_code == 1
    else:
        assert sigterm["stopped"] is True
        assert exit_code == 0


@needs_tini
def test_under_tini_both_checks_pass():
    tag = f"zw-{uuid.uuid4().hex}"
    code, report, _err = _pid1(
        "--init", "tini", "--duration", "2", "--", PYTHON, "-c", _exec_sleep(tag), tag=tag
    )
    run = report["runs"][0]
    assert run["mode"].startswith("tini -- ")
    orphans, sigterm = _check(run, "orphans"), _check(run, "SIGTERM")
    assert orphans["verdict"] == "pass", orphans
    assert orphans["collected"] >= 1, orphans
    assert sigterm["verdict"] == "pass", sigterm
    assert code == 0, report


@needs_tini
def test_compare_init_reports_both_runs():
    tag = f"zw-{uuid.uuid4().hex}"
    proc = zombiewatch(
        "run", "--pid1", "--compare-init", "tini", "--duration", "1", "--settle", "0.5",
        "--stop-timeout", "2", "--", PYTHON, "-c", f"import time; time.sleep(1000)  # {tag}",
    )  # fmt: skip
    _assert_gone(tag)
    blocks = proc.stdout.split("\n\n")
    assert len(blocks) == 2, proc.stdout
    assert "SIGTERM: FAIL" in blocks[0]
    assert "ignores SIGTERM as PID 1" in blocks[0]
    assert "target     tini -- " in blocks[1]
    assert "SIGTERM: PASS" in blocks[1]
    assert proc.returncode == 1


def test_flood_reaches_a_server_in_the_namespace():
    # The namespace shares the host's network: the flooder connects as usual.
    port = _free_low_port()
    tag = f"zw-{uuid.uuid4().hex}"
    code, report, err = _pid1(
        "--flood", f"127.0.0.1:{port}", "--connections", "200", "--",
        *server.command(server.Config(mode="sigchld", port=port)), tag,
        tag=tag,
    )  # fmt: skip
    run = report["runs"][0]
    assert run["ok"] == 200, err
    assert _check(run, "SIGTERM")["verdict"] == "pass"  # the server handles SIGTERM
    assert code == 0, run["failed_rules"]


def test_load_command_runs_on_the_host_against_a_server_in_the_namespace(tmp_path):
    # The load is started after the runner is back in its own namespace:
    # it runs beside the runner, and reaches PID 1's port over the network.
    port = _free_low_port()
    tag = f"zw-{uuid.uuid4().hex}"
    flood_sh = Path(__file__).resolve().parents[2] / "zombiewatch" / "scripts" / "flood.sh"
    seen = tmp_path / "load-ns"
    code, report, err = _pid1(
        "--wait-port", str(port),
        "--load", f"readlink /proc/self/ns/pid > {seen}; {flood_sh} 127.0.0.1 {port} 20 5",
        "--", *server.command(server.Config(mode="sigchld", port=port)), tag,
        tag=tag,
    )  # fmt: skip
    run = report["runs"][0]
    assert run["load_status"] == 0, err
    assert seen.read_text().strip() == os.readlink("/proc/self/ns/pid")
    root = next(int(pid) for pid, ns in run["ns_pids"].items() if ns == 1)
    assert run["by_parent"][0]["pid"] == root, run["by_parent"]
    assert _check(run, "SIGTERM")["verdict"] == "pass"
    assert code == 0, run["failed_rules"]


def _free_low_port() -> int:
    # Below the ephemeral range (docs/FACTS.md, Test ports).
    import random
    import socket

    for _ in range(100):
        port = random.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_runner_killed_takes_the_namespace_with_it(spawn, user, request):
    """SIGKILL of the runner: PID 1 gets SIGKILL (PR_SET_PDEATHSIG; as
    nobody, through unshare(1) and its --kill-child), and the kernel kills
    every process of its namespace."""
    tag = f"zw-{uuid.uuid4().hex}"
    python, how = PYTHON, {}
    if user == "nobody":
        python, path = request.getfixturevalue("nobody_python")
        how = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": "/",
               "env": {"PATH": os.environ["PATH"], "HOME": "/", "PYTHONPATH": path,
                       "PYTHON": python}}  # fmt: skip
    runner, pid1, namespace = _start_runner(spawn, python, tag, **how)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()

    def emptied() -> bool:
        # PID 1 itself may stay a zombie until the host's init collects it.
        left = _in_namespace(namespace)
        return all(pid == pid1 for pid in left)

    call_until(emptied, 30, what="the namespace to be emptied")
    _assert_gone(tag)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_runner_interrupted_stops_the_namespace(spawn, sig):
    """Ctrl-C (SIGINT; CMD is in a session of its own, so a terminal's goes
    to the runner alone) or SIGTERM to the runner: exit 130, after the usual
    stop of PID 1 (SIGTERM, --stop-timeout, SIGKILL); nothing of the
    namespace left."""
    tag = f"zw-{uuid.uuid4().hex}"
    runner, _pid1, namespace = _start_runner(spawn, PYTHON, tag)
    runner.send_signal(sig)
    assert runner.wait(timeout=60) == 130
    assert _in_namespace(namespace) == []
    _assert_gone(tag)


def _start_runner(spawn, python: str, tag: str, **how):
    """Start ``run --pid1`` on the entrypoint in the background; return it,
    PID 1's host pid and its namespace, once PID 1 has children there."""
    runner = spawn(
        [python, "-m", "zombiewatch", "run", "--pid1", "--stop-timeout", "1", "--duration",
         "120", "--", ENTRYPOINT, tag],
        stderr=subprocess.PIPE, **how,
    )  # fmt: skip
    line = runner.stderr.readline()
    assert "host pid" in line, line
    pid1 = int(line.rsplit(" ", 1)[1])
    namespace = os.readlink(f"/proc/{pid1}/ns/pid")
    call_until(lambda: len(_in_namespace(namespace)) >= 2, 30, what="the entrypoint's children")
    return runner, pid1, namespace


def _in_namespace(link: str) -> list[int]:
    pids = []
    for path in glob.glob("/proc/[0-9]*/ns/pid"):
        try:
            if os.readlink(path) == link:
                pids.append(int(path.split("/")[2]))
        except OSError:
            continue
    return pids


def _as_nobody(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, user=65534, group=65534,
        extra_groups=[], stdin=subprocess.DEVNULL, cwd="/",
        env={"PATH": os.environ["PATH"], "HOME": "/", **env},
    )  # fmt: skip


def _python_for_nobody() -> str | None:
    """An interpreter of our version that user nobody may run (the venv's
    may live under /root): it reads our packages through PYTHONPATH."""
    for python in (os.path.realpath(PYTHON), "/usr/bin/python3", shutil.which("python3") or ""):
        try:
            out = _as_nobody([python, "-c", "import sys; print(sys.version_info[:2])"])
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == str(sys.version_info[:2]):
            return python
    return None


@pytest.fixture
def nobody_python():
    """A Python that user nobody may run, and the PYTHONPATH that finds our
    packages; skip where there is none."""
    python = _python_for_nobody()
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that user nobody may run")
    root = str(Path(__file__).resolve().parents[2])
    return python, os.pathsep.join([root, *site.getsitepackages()])


def test_non_root_user_runs_it_in_a_user_namespace(nobody_python):
    """A real unprivileged user (nobody): unshare(1) makes the namespaces
    inside a user namespace, and the checks are the same."""
    probe = _as_nobody(["unshare", "--user", "--map-root-user", "--pid", "--fork", "true"])
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces for nobody here: {probe.stderr.strip()}")
    python, path = nobody_python
    tag = f"zw-{uuid.uuid4().hex}"
    proc = _as_nobody(
        [python, "-m", "zombiewatch", "run", "--pid1", "--json", "--duration", "1",
         "--settle", "0.5", "--stop-timeout", "2", "--",
         python, "-c", f"import time; time.sleep(1000)  # {tag}"],
        PYTHONPATH=path,
    )  # fmt: skip
    _assert_gone(tag)
    assert "new user and PID namespaces" in proc.stderr, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    assert _check(run, "SIGTERM")["verdict"] == "fail"
    assert 1 in run["ns_pids"].values()
    assert proc.returncode == 1


@pytest.fixture
def fake_path():
    """A directory for PATH that user nobody may read (pytest's tmp_path is
    root's alone), with sh in it."""
    path = tempfile.mkdtemp(prefix="zw-path-")
    os.chmod(path, 0o755)
    os.symlink("/bin/sh", os.path.join(path, "sh"))
    yield path
    shutil.rmtree(path)


def test_non_root_without_user_namespaces_gets_one_line_and_exit_2(nobody_python, fake_path):
    """Where user namespaces are disabled (max_user_namespaces 0, or a
    seccomp filter) unshare(1) fails with EPERM; that is simulated by an
    unshare that says what util-linux's says there, as the machine-wide
    switch would also stop every other user of the machine."""
    fake = os.path.join(fake_path, "unshare")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    os.chmod(fake, 0o755)
    _refused_as_nobody(
        nobody_python, fake_path, "a user namespace failed too: unshare: unshare failed:"
        " Operation not permitted" + _namespace.userns_switch()  # a machine that has one set
    )  # fmt: skip


def test_non_root_without_unshare_gets_one_line_and_exit_2(nobody_python, fake_path):
    _refused_as_nobody(
        nobody_python, fake_path, "unshare(1) (util-linux), which could make one in a user"
        " namespace, is not installed"
    )  # fmt: skip


def _refused_as_nobody(nobody_python, path_dir: str, why: str) -> None:
    """``run --pid1`` as nobody with PATH=``path_dir``: exit 2, one line."""
    python, path = nobody_python
    proc = _as_nobody(
        [python, "-m", "zombiewatch", "run", "--pid1", "--", "/bin/true"],
        PYTHONPATH=path, PATH=path_dir,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "zombiewatch: --pid1 cannot create a PID namespace: creating one needs root"
        f" (CAP_SYS_ADMIN), which this process does not have, and {why}\n"
    )


# In a user namespace of its own, where user.max_user_namespaces (a limit
# per user namespace) is 0, and with every capability dropped for good, the
# runner may create neither a PID namespace nor a user namespace: the
# kernel's real refusal, and nothing changed for the rest of the machine.
NO_USERNS = (
    "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv"
    " --securebits +noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked"
    ' --inh-caps=-all --bounding-set=-all -- "$@"'
)


def test_without_user_namespaces_the_kernel_refuses_with_one_line_and_exit_2():
    if shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("needs setpriv and unshare (util-linux)")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", NO_USERNS, "sh", "true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot make a user namespace without them here: {probe.stderr.strip()}")
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", NO_USERNS, "sh",
         PYTHON, "-m", "zombiewatch", "run", "--pid1", "--", "/bin/true"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "zombiewatch: --pid1 cannot create a PID namespace: creating one needs root"
        " (CAP_SYS_ADMIN), which this process does not have, and a user namespace failed"
        " too: unshare: unshare failed: No space left on device (user namespaces are off"
        " here: sysctl user.max_user_namespaces = 0)\n"
    )


def _pythons() -> list[str]:
    found = []
    for version in ("3.10", "3.12"):
        found += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python3")))
        exe = shutil.which(f"python{version}")
        if exe and not found:
            found.append(exe)
    return found


@pytest.mark.parametrize("python", _pythons() or [None])
def test_namespace_start_on_other_pythons(python):
    """3.10 has no os.unshare (ctypes); 3.12 has it: both start a PID 1."""
    if python is None:
        pytest.skip("no Python 3.10 or 3.12 interpreter here besides the test's")
    root = str(Path(__file__).resolve().parents[2])
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        " from zombiewatch import _namespace, _platform;"
        " p = _namespace.spawn_pid1(['sh', '-c', 'echo $$; ls /proc | grep -c \"^[0-9]\"'],"
        " stdout=-1); out = p.communicate()[0].split(); import json;"
        " print(json.dumps([sys.version_info[1], _platform.can_use_os_unshare(),"
        " int(out[0]), int(out[1]), p.returncode]))"
    )
    out = subprocess.run(
        [python, "-c", script, root], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYENV_VERSION": "system"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    minor, has_os, pid, processes, status = json.loads(out.stdout)
    # PID 1 there, and its own /proc shows only its namespace (sh, ls, grep).
    assert (pid, status) == (1, 0), out.stdout
    assert processes <= 3, out.stdout
    assert has_os == (minor >= 12), out.stdout


def test_cmd_that_exits_by_itself_skips_the_sigterm_check():
    tag = f"zw-{uuid.uuid4().hex}"
    code, report, _err = _pid1("--", "sh", "-c", f"exit 3  # {tag}", tag=tag)
    run = report["runs"][0]
    sigterm = _check(run, "SIGTERM")
    assert sigterm["verdict"] == "skip", sigterm
    assert sigterm["text"] == "sh exited by itself (status 3) before the stop: SIGTERM not tried"
    assert run["target_status"] == 3
    assert code == 0  # a skipped check fails nothing


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_example() -> tuple[list[str], list[str], int]:
    """The command, the report and the exit status the README's section
    "Containers: do I need an init?" shows."""
    section = README.read_text().split("## Containers: do I need an init?")[1]
    block = section.split("```console\n")[1].split("```")[0].splitlines()
    command = shlex.split(block[0].removeprefix("$ "))
    end = block.index("$ echo $?")
    return command, block[1:end], int(block[end + 1])


def _readme_pattern(line: str) -> re.Pattern[str]:
    """A README line with what varies between runs left open: figures,
    pids, histogram buckets, and the command line beside a pid (read before
    or after an exec, depending on timing)."""
    if line.startswith("histogram  "):
        return re.compile(r"histogram  zombie lifetimes: .+$")
    parts = re.split(r"(\[ns \d+\] [^:]*?(?=: | that exited)|\d+(?:\.\d+)?)", line)
    pattern = ""
    for i, part in enumerate(parts):
        if not i % 2:
            pattern += re.escape(part)
        elif part.startswith("[ns"):
            pattern += r"\[ns \d+\] .+?"
        else:
            pattern += r"\d+(?:\.\d+)?"
    return re.compile(pattern + "$")


@needs_tini
def test_the_readme_report_is_what_run_pid1_prints():
    from zombiewatch import observe

    if observe.events_unavailable_reason() is not None:
        pytest.skip("the README shows a run observed with kernel events")
    command, shown, status = _readme_example()
    assert command[0] == "zombiewatch"
    root = Path(__file__).resolve().parents[2]
    # `python3` in the example is ours: first on PATH, as in a venv.
    env = {**os.environ, "PATH": f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [PYTHON, "-m", "zombiewatch", *command[1:]], capture_output=True, text=True,
        timeout=180, stdin=subprocess.DEVNULL, cwd=root, env=env,
    )  # fmt: skip
    out = proc.stdout.rstrip("\n").split("\n")
    assert [line[:11] for line in out] == [line[:11] for line in shown], proc.stdout
    # Line for line, but parents with as many zombies seen come in either order.
    parents = [_readme_pattern(line) for line in shown if line.startswith("parent ")]
    for line, expected in zip(out, shown, strict=True):
        if line.startswith("parent "):
            match = next((p for p in parents if p.match(line)), None)
            assert match is not None, (line, shown)
            parents.remove(match)
        else:
            assert _readme_pattern(expected).match(line), (expected, line)
    assert proc.returncode == status, proc.stderr
