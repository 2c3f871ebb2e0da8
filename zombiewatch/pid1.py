"""``zombiewatch run --pid1``: does this program need an init when it is a
container's PID 1?

The program (or ``--init PROGRAM -- CMD``) runs as PID 1 of new PID and
mount namespaces (``_namespace``), and the runner watches it from the
host, as any ``run`` target, under the same loads. Two things change
for a PID 1 (docs/FACTS.md, "PID namespaces"): every orphan of the
namespace is reparented to it, and the kernel gives it no default signal
action, so SIGTERM without a handler does nothing. Each is a named check
of the report:

- **orphans**: how many processes were orphaned to PID 1, how many it
  collected and how long their zombies stayed (exact from kernel events,
  else sampled); an orphan still a zombie at the end fails it.
- **SIGTERM**: at the end PID 1 alone gets SIGTERM, as from
  ``docker stop``, then ``--stop-timeout`` seconds before SIGKILL; a
  PID 1 still there then fails it.

Nothing outlives a run: SIGKILL of PID 1 (at the end, or from the kernel
when the runner dies) makes the kernel kill every process of the
namespace (docs/FACTS.md, "PID namespaces").
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from zombiewatch import _containment, _namespace, _procfs, _stats
from zombiewatch._backoff import poll_until
from zombiewatch._names import program_name
from zombiewatch._output import CommandOutput
from zombiewatch._text import figure
from zombiewatch.errors import AccessDeniedError
from zombiewatch.modes.base import FAIL, PASS
from zombiewatch.report import Check, Report, RunResult, shell_join
from zombiewatch.runner import RunOptions, log, measure_command
from zombiewatch.targets import OrphanCollector, Target, child_exited, sigterm_raises

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL, as `docker stop`
SKIP = "skip"
INIT_ADVICE = "add an init (tini, dumb-init, `docker run --init`) or reap in CMD"
# A double fork's intermediate process often lives less than a sampling
# interval: its child is then first seen under PID 1, as if PID 1 forked it.
SAMPLED_CAVEAT = (
    "sampled: an orphan whose parent exits between two samples looks like PID 1's own child"
)
MAX_NS_PIDS = 10_000  # bound on the host pid -> namespace pid map of one run


@dataclass
class Stop:
    """How PID 1 took SIGTERM at the end of the run."""

    sigterm: bool  # it was still running, and got SIGTERM
    stopped: bool = False  # it exited within the stop timeout
    seconds: float = 0.0  # from SIGTERM to its exit, or to SIGKILL


class Pid1Target(Target):
    """A program run as PID 1 of its own PID and mount namespaces.

    ``stop()`` first answers the SIGTERM question: SIGTERM to PID 1 alone,
    up to ``stop_timeout`` seconds, then SIGKILL, which ends the whole
    namespace; then the usual stop finds nothing left.
    """

    def __init__(
        self,
        argv: list[str],
        stop_timeout: float = STOP_TIMEOUT,
        output: CommandOutput | None = None,
    ) -> None:
        self.stop_timeout = stop_timeout
        self.stop_result: Stop | None = None
        self._pid1 = 0
        super().__init__(argv, output=output)
        # Started through unshare(1) in a user namespace, PID 1 is its child.
        self.pid = self._pid1 or self.pid
        self.userns = bool(self._pid1)

    def _popen(self, argv: list[str], **popen: Any) -> Any:
        try:
            return _namespace.spawn_pid1(argv, **popen)
        except _namespace.NotPermitted:
            # No CAP_SYS_ADMIN: a user namespace, where the kernel allows one.
            proc, self._pid1 = _namespace.spawn_pid1_in_userns(argv, **popen)
            return proc

    def exited(self) -> bool:
        # The process we started: PID 1 itself, or unshare(1), which exits
        # when PID 1 does.
        return self.proc.returncode is not None or child_exited(self.proc.pid)

    def stop(self, tree: Any) -> None:
        if self.stop_result is None:
            self.stop_result = self._sigterm()
        if not poll_until(self.exited, STOP_TIMEOUT):
            self.proc.kill()  # unshare(1) still there: --kill-child takes PID 1 with it
        super().stop(tree)

    def _sigterm(self) -> Stop:
        if self.exited():
            return Stop(sigterm=False)
        started = time.monotonic()
        # Unreaped, PID 1's host pid cannot have been reused.
        os.kill(self.pid, signal.SIGTERM)
        stopped = poll_until(self.exited, self.stop_timeout)
        seconds = time.monotonic() - started
        if not stopped:
            os.kill(self.pid, signal.SIGKILL)  # the kernel kills the namespace with it
            if not poll_until(self.exited, STOP_TIMEOUT):
                log(f"PID 1 (host pid {self.pid}) survived SIGKILL for {STOP_TIMEOUT:g} s")
        return Stop(sigterm=True, stopped=stopped, seconds=seconds)


class NamespaceCollector(OrphanCollector):
    """What ``run`` does with orphans, for a target that is PID 1: nothing
    escapes a PID namespace, every orphan goes to its PID 1, so PID 1 is
    the adopter. Each look records the namespace pid of every process of
    the tree, for the report (``/proc/PID/status`` NSpid)."""

    def __init__(self) -> None:
        super().__init__(subreaper=False)
        self.root = 0
        self.ns_pids: dict[int, int] = {}

    @property
    def works(self) -> bool:
        return True  # each look records the tree's namespace pids

    @property
    def adopters(self) -> list[int]:
        return [self.root]

    def collect(self) -> int:
        if self.root and len(self.ns_pids) < MAX_NS_PIDS:
            stack = [self.root]
            while stack:
                pid = stack.pop()
                if pid not in self.ns_pids:
                    ns = _namespace.ns_pid(pid)
                    if ns is None:
                        continue  # gone
                    self.ns_pids[pid] = ns
                try:
                    stack.extend(_procfs.read_children(pid))
                except AccessDeniedError:
                    continue
        return 0


def orphans_check(result: RunResult, root: int) -> Check:
    """The orphans check: who PID 1 adopted, and whether it collected them."""
    stats = result.monitor
    orphaned = stats.escaped.get(root, 0)
    collected = len(stats.adopted_lifetimes)
    # Sampled, an orphan first seen already under PID 1 is not told from
    # its own child: any zombie PID 1 left uncollected counts then.
    sampled = stats.method != "events"
    held = [z for z in result.leaked if z.adopted or (sampled and z.ppid == root)]
    life = _stats.summary_ms(stats.adopted_lifetimes)
    how = "sampled" if sampled else "exact, kernel events"
    data: dict[str, Any] = {
        "orphaned": orphaned,
        "collected": collected,
        "uncollected": len(held),
        "zombie_ms": life,
        "uncollected_age_ms": round(max((z.age(result.end) for z in held), default=0) * 1000, 1),
        "method": stats.method,
    }
    if held:
        age = max(z.age(result.end) for z in held)
        if sampled:
            # Not "N orphans reached PID 1": a sample may have seen none of them.
            text = (
                f"{len(held)} zombie(s) still under PID 1 after {age:.1f} s"
                f" ({orphaned} orphan(s) seen reaching it; {SAMPLED_CAVEAT})"
            )
        else:
            text = (
                f"{orphaned} orphan(s) reached PID 1, it collected {collected};"
                f" {len(held)} still zombie(s) after {age:.1f} s"
            )
        return Check("orphans", FAIL, f"{text}: {INIT_ADVICE}", data)
    if not orphaned:
        if sampled:
            text = f"no zombie left under PID 1, and no orphan seen reaching it ({SAMPLED_CAVEAT})"
        else:
            text = "no process was orphaned to PID 1 during the run"
        return Check("orphans", PASS, text, data)
    text = f"{orphaned} orphan(s) reached PID 1, it collected {collected}"
    if collected:
        text += f"; zombies there p50/max {figure(life['p50'])}/{figure(life['max'])} ms ({how})"
    if orphaned > collected:
        text += f"; {orphaned - collected} still running at the stop"
    return Check("orphans", PASS, text, data)


def sigterm_check(stop: Stop | None, pid1: str, stop_timeout: float, status: int | None) -> Check:
    """The SIGTERM check: did PID 1 stop within the grace, or was it killed?"""
    data: dict[str, Any] = {"stop_timeout_s": stop_timeout}
    if stop is None or not stop.sigterm:
        return Check(
            "SIGTERM",
            SKIP,
            f"{pid1} exited by itself (status {status}) before the stop: SIGTERM not tried",
            data,
        )
    data.update(stopped=stop.stopped, seconds=round(stop.seconds, 3))
    if stop.stopped:
        return Check(
            "SIGTERM",
            PASS,
            f"{pid1} stopped {_duration(stop.seconds)} after SIGTERM as PID 1"
            f" (--stop-timeout {stop_timeout:g} s)",
            data,
        )
    return Check(
        "SIGTERM",
        FAIL,
        f"{pid1} ignores SIGTERM as PID 1: `docker stop` will wait {stop_timeout:g} s then kill it",
        data,
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def measure_pid1(
    argv: list[str],
    opts: RunOptions,
    stop_timeout: float,
    init: str | None = None,
    flood_to: tuple[str, int] | None = None,
    load_command: str | None = None,
    wait_port: tuple[str, int] | None = None,
) -> RunResult:
    """Measure ``argv`` (or ``init -- argv``) as PID 1 of a new namespace."""
    pid1_argv = [init, "--", *argv] if init else argv
    name = os.path.basename(pid1_argv[0])
    collector = NamespaceCollector()
    # The namespace's processes are members of the run's box like any other
    # (docs/DESIGN.md, Containment): its guard stops them if we die.
    with _containment.contain() as box:
        collector.keep.add(box.guard_pid)
        output = CommandOutput(name, opts.cmd_output)
        target = Pid1Target(pid1_argv, stop_timeout, output)
        collector.root = target.pid
        collector.collect()
        where = "new user and PID namespaces" if target.userns else "a new PID namespace"
        log(f"started {shell_join(pid1_argv)} as PID 1 of {where}, host pid {target.pid}")
        output.pass_on()
        # Two runs of --compare-init are two testcases: the init names the second.
        testcase = opts.name or program_name(argv)
        if init:
            testcase += f" under {os.path.basename(init)}"
        result = measure_command(
            shell_join(pid1_argv), target, opts, collector, box, flood_to, load_command, wait_port,
            title=f"{testcase}, PID 1 (host pid {target.pid})",
        )  # fmt: skip
    result.name = testcase
    result.ns_pids = collector.ns_pids
    result.checks = [
        orphans_check(result, target.pid),
        sigterm_check(target.stop_result, name, stop_timeout, target.proc.returncode),
    ]
    return result


def run_pid1(
    argv: list[str],
    opts: RunOptions,
    stop_timeout: float = STOP_TIMEOUT,
    inits: tuple[str | None, ...] = (None,),
    flood_to: tuple[str, int] | None = None,
    load_command: str | None = None,
    wait_port: tuple[str, int] | None = None,
) -> Report:
    """``run --pid1``: one run per entry of ``inits`` (None: CMD itself is
    PID 1), all in one report (``--compare-init`` gives two)."""
    report = Report(runs=[])
    with sigterm_raises():
        for init in inits:
            result = measure_pid1(argv, opts, stop_timeout, init, flood_to, load_command, wait_port)
            report.runs.append(result)
    return report
