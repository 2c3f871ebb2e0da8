"""`zombiewatch export` end to end: a real exporter scraped over HTTP and
through its textfile while a test process holds a known number of zombies,
a real Prometheus server reading it back, and the shipped alert rules
checked by ``promtool``.

The zombie holder names itself ``zwx<pid>`` (prctl PR_SET_NAME), so its
row is told apart from the zombies other tests on this machine hold; the
exporters run with a large ``--top`` so that it is never summed into
``other``. The holder collects its children when told, and when its stdin
closes, so nothing outlives a test. Prometheus runs on loopback with a
temporary configuration and data directory, both removed with it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PYTHON, call_until, read_ready_line
from zombiewatch import _defaults, _platform, _proctl

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="the prometheus extra is not installed"
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _platform.LINUX, reason="export scans /proc, which only Linux has"),
]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "zombiewatch-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "zombiewatch-rules.test.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DAEMONSET = ROOT / "deploy" / "kubernetes" / "zombiewatch-daemonset.yaml"
UNIT = ROOT / "deploy" / "systemd" / "zombiewatch-export.service"
USER = pwd.getpwuid(os.getuid()).pw_name
# Should pytest itself be killed, the servers get SIGTERM (PR_SET_PDEATHSIG).
DIE_WITH_US = _proctl.die_with_parent_preexec(signal.SIGTERM)

HOLDER = r'''
"""Hold zombies for the export tests. Reads commands on stdin:
"fork N": fork N children that exit at once, wait until all are zombies,
print {"pid", "name", "zombies"}; "reap": collect them all, print
{"reaped": N}. At EOF (or SIGTERM): collect everything and exit."""
import ctypes, json, os, signal, sys, time

name = f"zwx{os.getpid()}"
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: our comm
kids = []

def state(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2 : data.rindex(b")") + 3]

def reap():
    n = 0
    while True:
        try:
            os.waitpid(-1, 0)
            n += 1
        except ChildProcessError:
            kids.clear()
            return n

signal.signal(signal.SIGTERM, lambda *a: (reap(), os._exit(0)))
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "fork":
        for _ in range(int(cmd[1])):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            kids.append(pid)
        deadline = time.monotonic() + 60
        while not all(state(p) == b"Z" for p in kids) and time.monotonic() < deadline:
            time.sleep(0.005)
        print(json.dumps({"pid": os.getpid(), "name": name, "zombies": len(kids)}), flush=True)
    elif cmd[0] == "reap":
        print(json.dumps({"reaped": reap()}), flush=True)
reap()
'''


class Holder:
    """A process that holds zombies on command."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.name = f"zwx{proc.pid}"

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return read_ready_line(self.proc, timeout=60)

    def fork(self, count: int) -> None:
        assert self._ask(f"fork {count}")["zombies"] == count

    def reap(self) -> int:
        return int(self._ask("reap")["reaped"])


@pytest.fixture
def holder(spawn, tmp_path) -> Holder:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = spawn(
        [PYTHON, "-I", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return Holder(proc)


@pytest.fixture
def exporter(spawn, tmp_path):
    """Start ``zombiewatch export ARGS``; return (proc, ready line, log path).

    stderr goes to a file: a pipe nobody reads could fill.
    """

    def start(*args: str, prefix: list[str] | None = None):
        log = tmp_path / f"export-{len(list(tmp_path.glob('export-*')))}.log"
        proc = spawn(
            [*(prefix or []), PYTHON, "-m", "zombiewatch", "export", "--top", "1000", *args],
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            start_new_session=True,
            preexec_fn=DIE_WITH_US,
        )
        return proc, read_ready_line(proc, timeout=60), log

    return start


def get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _ready(url: str) -> bool:
    """Prometheus answers 503 on /-/ready until it has loaded its storage."""
    try:
        return "Ready" in get(url)
    except urllib.error.HTTPError as err:
        if err.code == 503:
            return False
        raise


def parse(text: str) -> dict[str, list[Any]]:
    """{sample name: [samples]} of an exposition."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def held_by(metrics: dict[str, list[Any]], name: str) -> float | None:
    for sample in metrics.get("zombiewatch_zombies", []):
        if sample.labels.get("parent") == name:
            return float(sample.value)
    return None


def single(metrics: dict[str, list[Any]], name: str) -> float:
    (sample,) = metrics[name]
    return float(sample.value)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=30)


# -- over HTTP -------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_scrape_counts_the_zombies_a_process_holds_and_stops_cleanly(holder, exporter, sig):
    holder.fork(7)
    proc, ready, log = exporter("--listen", "127.0.0.1:0")
    assert ready["event"] == "listening"
    assert ready["pid"] == proc.pid
    url = f"http://127.0.0.1:{ready['port']}/metrics"
    metrics = call_until(
        lambda: (m := parse(get(url))) and held_by(m, holder.name) == 7 and m,
        timeout=60,
        what=f"7 zombies of {holder.name} in /metrics",
    )
    (row,) = [s for s in metrics["zombiewatch_zombies"] if s.labels["parent"] == holder.name]
    assert row.labels == {"parent": holder.name, "user": USER}  # no pid label by default
    (age,) = [
        s
        for s in metrics["zombiewatch_oldest_zombie_age_seconds"]
        if s.labels["parent"] == holder.name
    ]
    assert age.value > 0
    assert single(metrics, "zombiewatch_scan_success") == 1
    assert single(metrics, "zombiewatch_scanned_processes") > 1
    (info,) = metrics["zombiewatch_info"]
    assert info.labels["method"] == ready["method"]

    holder.reap()
    call_until(
        lambda: held_by(parse(get(url)), holder.name) is None,
        timeout=60,
        what="the reaped zombies to leave /metrics",
    )
    assert stop(proc, sig) == 0
    assert f"stopping on {signal.Signals(sig).name}" in log.read_text()


def test_pid_label_on_request(holder, exporter):
    holder.fork(3)
    _proc, ready, _log = exporter("--listen", "127.0.0.1:0", "--pid-label")
    text = get(f"http://127.0.0.1:{ready['port']}/metrics")
    rows = [s for s in parse(text)["zombiewatch_zombies"] if s.labels["parent"] == holder.name]
    assert [r.labels["pid"] for r in rows] == [str(holder.pid)]
    assert rows[0].value == 3


def test_exposition_passes_promtool_lint(exporter):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    _proc, ready, _log = exporter("--listen", "127.0.0.1:0")
    text = get(f"http://127.0.0.1:{ready['port']}/metrics")
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == ""


def test_events_count_created_and_collected_and_time_lifetimes(holder, exporter):
    proc, ready, log = exporter("--listen", "127.0.0.1:0")
    if ready["method"] != "events":
        pytest.skip(f"kernel events unavailable here: {log.read_text().strip()}")
    url = f"http://127.0.0.1:{ready['port']}/metrics"
    before = parse(get(url))
    holder.fork(5)
    # Held for over a second, so each lifetime lands past the 1 s bucket.
    call_until(lambda: held_by(parse(get(url)), holder.name) == 5, 60, "5 zombies")
    time.sleep(1.1)  # the lifetime under test, not a wait for a condition
    assert holder.reap() == 5

    def long_lived(m: dict[str, list[Any]]) -> float:
        buckets = {s.labels["le"]: s.value for s in m["zombiewatch_zombie_lifetime_seconds_bucket"]}
        return buckets["+Inf"] - buckets["1.0"]

    def counted() -> dict[str, list[Any]] | None:
        m = parse(get(url))
        return m if long_lived(m) - long_lived(before) >= 5 else None

    after = call_until(counted, 60, "5 lifetimes over 1 s in the histogram")
    for name in ("zombiewatch_zombies_created_total", "zombiewatch_zombies_collected_total"):
        assert single(after, name) - single(before, name) >= 5
    assert (
        single(after, "zombiewatch_zombie_lifetime_seconds_sum")
        - single(before, "zombiewatch_zombie_lifetime_seconds_sum")
        >= 5 * 1.0
    )
    assert stop(proc) == 0


def test_observe_events_where_they_cannot_be_had_exits_3():
    # In a network namespace of its own the kernel refuses process events
    # (they are only sent in the initial one).
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    probe = subprocess.run(
        [unshare, "--net", PYTHON, "-c",
         "from zombiewatch import _cnproc; print(_cnproc.unavailable_reason())"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0 or probe.stdout.strip() == "None":
        pytest.skip(f"cannot take events away here: {probe.stderr.strip() or 'events work'}")
    done = subprocess.run(
        [unshare, "--net", PYTHON, "-m", "zombiewatch", "export", "--listen", "127.0.0.1:0",
         "--observe", "events"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("zombiewatch: --observe events: cannot listen to process events")
    assert done.stdout == ""


def test_auto_falls_back_to_scans_and_says_why_once(exporter, tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    out = tmp_path / "textfile"
    out.mkdir()
    # A network namespace of its own: no process events (see the test above).
    proc, ready, log = exporter("--textfile", str(out), "--every", "0.2", prefix=[unshare, "--net"])
    if ready["method"] == "events":
        pytest.skip("process events work even in a network namespace of its own here")
    assert ready["method"] == "scan"
    path = out / "zombiewatch.prom"
    metrics = call_until(lambda: path.exists() and parse(path.read_text()), 60, "a textfile")
    (info,) = metrics["zombiewatch_info"]
    assert info.labels["method"] == "scan"
    assert "zombiewatch_zombies_created_total" not in metrics  # absent, not a made-up 0
    assert "zombiewatch_zombie_lifetime_seconds_count" not in metrics
    assert stop(proc) == 0
    text = log.read_text()
    assert text.count("kernel events unavailable") == 1, text


@pytest.mark.parametrize(
    ("listen", "shown"), [("0.0.0.0:0", "0.0.0.0:"), ("[::]:0", "[::]:")], ids=["ipv4", "ipv6"]
)
def test_binding_beyond_loopback_warns(exporter, listen, shown):
    if listen.startswith("[") and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    proc, ready, log = exporter("--listen", listen)
    assert f"listening on {shown}{ready['port']}: anyone who can reach it" in log.read_text()
    assert stop(proc) == 0


def test_a_port_in_use_is_one_line_and_exit_3(exporter):
    _proc, ready, _log = exporter("--listen", "127.0.0.1:0")
    done = subprocess.run(
        [PYTHON, "-m", "zombiewatch", "export", "--listen", f"127.0.0.1:{ready['port']}"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("zombiewatch: cannot listen on")
    assert "Traceback" not in done.stderr


def test_a_failing_scan_is_an_error_metric_not_a_crash(exporter, tmp_path):
    # In a mount namespace of its own, /proc is an empty tmpfs: every scan
    # finds no process, which the exporter must report as a failure.
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    probe = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "true"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    script = 'mount -t tmpfs none /proc && exec "$@"'
    proc, ready, log = exporter(
        "--listen", "127.0.0.1:0", "--observe", "scan",
        prefix=[unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{ready['port']}/metrics"
    first = parse(get(url))
    second = parse(get(url))
    assert single(first, "zombiewatch_scan_success") == 0
    assert single(second, "zombiewatch_scan_errors_total") == 2
    assert "zombiewatch_zombies" not in second
    assert proc.poll() is None, "the exporter must keep running"
    log = log.read_text()
    assert log.count("scan failed:") == 1, log
    assert "Traceback" not in log
    assert stop(proc) == 0


# -- through a textfile ------------------------------------------------------------


def test_textfile_is_replaced_atomically_and_removed_at_exit(holder, exporter, tmp_path):
    holder.fork(4)
    out = tmp_path / "textfile"
    out.mkdir()
    proc, ready, _log = exporter("--textfile", str(out), "--every", "0.2")
    path = out / "zombiewatch.prom"
    assert ready == {
        "event": "writing", "path": str(path), "every": 0.2, "pid": proc.pid,
        "method": ready["method"],
    }  # fmt: skip
    call_until(
        lambda: path.exists() and held_by(parse(path.read_text()), holder.name) == 4,
        timeout=60,
        what="4 zombies in the textfile",
    )
    holder.reap()
    # Rewritten: the row goes, and every read in between parses whole.
    call_until(
        lambda: held_by(parse(path.read_text()), holder.name) is None,
        timeout=60,
        what="the textfile to be rewritten",
    )
    assert sorted(p.name for p in out.iterdir()) == ["zombiewatch.prom"], "no temporary left"
    assert stop(proc) == 0
    assert not path.exists(), "a stopped exporter leaves no stale counts"


def _listening_on(log: Path, proc: subprocess.Popen[str]) -> str | None:
    """The HOST:PORT a Prometheus program logged it listens on, or None yet."""
    if proc.poll() is not None:
        raise AssertionError(f"{log.name}: exited {proc.returncode}: {log.read_text()}")
    found = re.search(r'msg="Listening on" address=([\d.]+:\d+)', log.read_text())
    return found.group(1) if found else None


def test_node_exporter_serves_the_textfile(holder, exporter, spawn, tmp_path):
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        pytest.skip("node_exporter not installed (Debian package prometheus-node-exporter)")
    holder.fork(6)
    out = tmp_path / "textfile"
    out.mkdir()
    exporter("--textfile", str(out), "--every", "0.5")
    log = tmp_path / "node_exporter.log"
    node = spawn(
        [binary, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={out}", "--web.listen-address=127.0.0.1:0"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=DIE_WITH_US,
    )  # fmt: skip
    url = "http://" + call_until(lambda: _listening_on(log, node), 60, "node_exporter") + "/metrics"
    metrics = call_until(
        lambda: (m := parse(get(url))) and held_by(m, holder.name) == 6 and m,
        timeout=60,
        what=f"6 zombies of {holder.name} through node_exporter",
    )
    # Our file must not break node_exporter's scrape (no clash with its own metrics).
    assert single(metrics, "node_textfile_scrape_error") == 0
    assert "process_cpu_seconds_total" not in parse((out / "zombiewatch.prom").read_text())


# -- the shipped alert rules --------------------------------------------------------


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    return promtool


def test_promtool_accepts_the_shipped_rules():
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    done = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_shipped_prometheus_config():
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the test extra)")
    done = subprocess.run(
        [_promtool(), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout  # it found and loaded the rules beside it
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [_defaults.EXPORT_LISTEN]


# -- the shipped DaemonSet and systemd unit, run as they say --------------------------


def _as_deployed(*setpriv: str) -> list[str]:
    """A prefix that runs a command on a read-only root (a mount namespace of
    its own) as ``setpriv`` options say, or skip with the reason."""
    unshare, setpriv_bin = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() != 0 or unshare is None or setpriv_bin is None:
        pytest.skip("needs root, unshare and setpriv (util-linux)")
    prefix = [
        unshare, "--mount", "--propagation", "private",
        "sh", "-c", 'mount -o remount,bind,ro / && exec "$@"', "sh", setpriv_bin, *setpriv,
    ]  # fmt: skip
    probe = subprocess.run(
        [*prefix, PYTHON, "-c", "import zombiewatch.export; open('/ro-probe', 'w')"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot run this Python on a read-only root as {setpriv}: {probe.stderr}")
    return prefix


def _counts_root_zombies(holder: Holder, exporter, args: list[str], prefix: list[str]):
    """Start the exporter with ``args`` under ``prefix`` and check that it
    counts the holder's zombies (held by this test's user) at once."""
    holder.fork(5)
    proc, ready, log = exporter(*args, prefix=prefix)
    url = f"http://127.0.0.1:{ready['port']}/metrics"
    metrics = parse(get(url))
    (row,) = [s for s in metrics["zombiewatch_zombies"] if s.labels["parent"] == holder.name]
    assert (row.value, row.labels["user"]) == (5, USER)
    assert single(metrics, "zombiewatch_scan_success") == 1
    return proc, ready, log


def test_the_daemonset_runs_as_nobody_on_a_read_only_root_and_sees_the_hosts_zombies(
    holder, exporter
):
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the test extra)")
    _namespace, daemonset = yaml.safe_load_all(DAEMONSET.read_text())
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["hostPID"] is True  # the node's processes, as this test's exporter sees them
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    assert uid != 0
    args = list(container["args"])
    # The pod listens on every address of its own network namespace; here, loopback.
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    prefix = _as_deployed(
        f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all",
    )  # fmt: skip
    proc, _ready, log = _counts_root_zombies(holder, exporter, args, prefix)
    assert stop(proc) == 0, log.read_text()  # the kubelet stops a pod with SIGTERM
    assert "Traceback" not in log.read_text()


def _unit_service() -> list[tuple[str, str]]:
    """The ``[Service]`` section of the shipped unit, as (key, value) in order."""
    section, found = "", []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.append((key, value))
    return found


def test_the_systemd_unit_verifies_and_runs_as_a_user_with_only_cap_net_admin(
    holder, exporter, tmp_path
):
    service = _unit_service()
    settings = dict(service)
    assert settings["DynamicUser"] == "yes"
    assert settings["ProtectSystem"] == "strict"  # a read-only root
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    # systemd expands ${NAME} from Environment= (overridden in /etc/default as
    # README says: here, a port of the kernel's choosing).
    program, *args = shlex.split(settings["ExecStart"])
    assert program == "/usr/local/bin/zombiewatch"
    env = dict(v.partition("=")[::2] for k, v in service if k == "Environment")
    env["ZOMBIEWATCH_LISTEN"] = "127.0.0.1:0"
    args = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], a) for a in args]
    assert args[0] == "export"

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        # Here zombiewatch is this Python's; verify says whether the rest is sound.
        local = tmp_path / UNIT.name
        local.write_text(UNIT.read_text().replace(program, f"{PYTHON} -m zombiewatch"))
        done = subprocess.run(
            [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stdout + done.stderr) == (0, "")

    prefix = _as_deployed(
        "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+net_admin",
        "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin",
    )  # fmt: skip
    proc, ready, log = _counts_root_zombies(holder, exporter, args[1:], prefix)
    events = subprocess.run(
        [PYTHON, "-c", "from zombiewatch import _cnproc; print(_cnproc.unavailable_reason())"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if events.stdout.strip() == "None":  # root hears kernel events here: so must the unit's user
        assert ready["method"] == "events", log.read_text()
    assert stop(proc) == 0, log.read_text()  # KillSignal=SIGTERM


# -- a real Prometheus server ---------------------------------------------------------


class Prometheus:
    """A Prometheus server on loopback with its own config and data directory."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(get(f"{self.url}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]


@pytest.fixture
def prometheus() -> Iterator[Any]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    started: list[subprocess.Popen[str]] = []
    # Not tmp_path: pytest keeps those after the session; this one goes with the server.
    workdir = tempfile.mkdtemp(prefix="zombiewatch-prometheus-")

    def start(target: str, rules: tuple[Path, ...] = (RULES,)) -> Prometheus:
        config = Path(workdir) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: {json.dumps([str(r) for r in rules])}\n"
            "scrape_configs:\n  - job_name: zombiewatch\n"
            f"    static_configs:\n      - targets: [{json.dumps(target)}]\n"
        )
        log = Path(workdir) / "prometheus.log"
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
             "--web.listen-address=127.0.0.1:0", "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
            text=True, start_new_session=True, preexec_fn=DIE_WITH_US,
        )  # fmt: skip
        started.append(proc)

        url = "http://" + call_until(lambda: _listening_on(log, proc), 90, "prometheus to listen")
        call_until(lambda: _ready(f"{url}/-/ready"), 90, "prometheus to be ready")
        return Prometheus(proc, url)

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_prometheus_scrapes_the_exporter_and_the_shipped_alert_fires(
    holder, exporter, prometheus, tmp_path
):
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the test extra)")
    # The shipped rules as they are, and a copy whose alerts fire after 1 s
    # instead of minutes (labelled rules="short-for"), to see one fire here.
    short = yaml.safe_load(RULES.read_text())
    for group in short["groups"]:
        group["name"] += "-short-for"
        for rule in group["rules"]:
            rule["for"] = "1s"
            rule["labels"]["rules"] = "short-for"
    short_rules = tmp_path / "short-for-rules.yml"
    short_rules.write_text(yaml.safe_dump(short))

    holder.fork(12)  # the rule ZombiesHeldByOneParent starts at 10
    _proc, ready, _log = exporter("--listen", "127.0.0.1:0")
    instance = f"127.0.0.1:{ready['port']}"
    server = prometheus(instance, (RULES, short_rules))

    def held() -> list[Any] | None:
        data = server.api("query", query=f'zombiewatch_zombies{{parent="{holder.name}"}}')
        return data["result"] if data["result"] and data["result"][0]["value"][1] == "12" else None

    (series,) = call_until(held, 120, "Prometheus to have scraped 12 zombies")
    assert series["metric"]["user"] == USER
    assert series["metric"]["job"] == "zombiewatch"
    assert series["metric"]["instance"] == f"127.0.0.1:{ready['port']}"

    def alert(rules: str | None, state: str) -> dict[str, Any] | None:
        for a in server.api("alerts")["alerts"]:
            labels = a["labels"]
            if (
                labels["alertname"] == "ZombiesHeldByOneParent"
                and labels.get("parent") == holder.name
                and labels.get("rules") == rules
                and a["state"] == state
            ):
                return dict(a)
        return None

    summary = f"12 zombies held by {holder.name} (user {USER}) on {instance}"
    fired = call_until(lambda: alert("short-for", "firing"), 120, "the short-for alert to fire")
    assert fired["annotations"]["summary"] == summary
    assert fired["labels"]["user"] == USER
    # The shipped rule, `for: 10m`, matches the same series and waits.
    shipped = call_until(lambda: alert(None, "pending"), 120, "the shipped alert to be pending")
    assert shipped["annotations"]["summary"] == summary
    (group,) = [g for g in server.api("rules")["groups"] if g["name"] == "zombiewatch"]
    assert len(group["rules"]) == 4
    call_until(
        lambda: all(r["health"] == "ok" for g in server.api("rules")["groups"] for r in g["rules"]),
        60,
        "every shipped rule to evaluate without error",
    )
