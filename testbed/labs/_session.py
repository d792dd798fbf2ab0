"""A lab on a running cluster: staged from its declaration, checked, and put back.

    with LabSession(cluster, LABS["dr-by-hand"]) as lab:
        print(lab.report(lab.check()))     # what the student sees after `check`
        lab.apply(lab.lab.solution)        # what a teacher's --solve does

The session records the sysctls a student may change (neighbour and
reverse-path rules, forwarding, every net.ipv4.vs one) and puts them back
at each restart and on exit, when the cluster is configured as declared
again (every host a step ran on is set up afresh), so a lab leaves the
shared cluster as it found it. Daemons a student (or a lab's hidden setup)
started are stopped at each restart and on exit: keepalived in any of the
lab's hosts, the directors' IPVS sync daemons.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..cluster import Cluster
from ..load import STREAM_PORT, ensure_stream_servers
from ..topology import ClusterSpec, text_picture
from ..util import Scoped, TestbedError
from ._checks import Verdict, observe
from ._daemons import stop_daemons, sync_threads
from ._lab import WORKDIR, Lab, Step, Task, fill
from ._outside import MAILBOXES, Answer, Mailbox

# what a student may change and the session restores (globs under /proc/sys)
_WATCHED = (
    "/proc/sys/net/ipv4/conf/*/rp_filter", "/proc/sys/net/ipv4/conf/*/arp_ignore",
    "/proc/sys/net/ipv4/conf/*/arp_announce", "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv4/vs/*",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    task: Task
    verdict: Verdict


class LabSession(Scoped):
    """One lab staged on a cluster (a context manager: stop() restores the cluster)."""

    def __init__(self, cluster: Cluster, lab: Lab) -> None:
        self.cluster = cluster
        self.lab = lab
        self.spec: ClusterSpec = lab.spec(cluster.base_spec)
        # the watched sysctls before the lab (restored at stop) and as it started
        self._saved: dict[str, dict[str, str]] = {}
        # one user of the hosts' shells at a time: the CLI's commands, or a check asked
        # from another terminal (Mailbox)
        self.lock = threading.Lock()
        self._started: dict[str, dict[str, str]] = {}

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.spec.hosts]

    def _sysctls(self) -> dict[str, dict[str, str]]:
        return {h: self.cluster.sysctls(h, *_WATCHED) for h in self.hosts}

    @property
    def directors(self) -> list[str]:
        return [d.name for d in self.spec.directors]

    def start(self) -> None:
        if not self._saved:
            self._saved = self._sysctls()
        self._stop_daemons()
        shutil.rmtree(WORKDIR, ignore_errors=True)
        os.makedirs(WORKDIR, mode=0o1777)
        os.chmod(WORKDIR, 0o1777)  # the students' hosts may write here, whoever they are
        if self.lab.start == "bare":
            self.cluster.unconfigure(self.spec)
        elif self.lab.start == "pair":
            self._pair()
        else:  # sets up again only the hosts something ran on since
            self.cluster.configure(self.spec)
        self.apply(self.lab.setup)
        if not self._started:
            self._started = self._sysctls()

    def restart(self) -> None:
        """Back to the lab's starting state (from whatever was done since): the sysctls
        as the lab started, then every host a step ran on set up again."""
        self._restore_sysctls(self._started, changes_setup=False)
        self.start()

    def _pair(self) -> None:
        """Both directors with the lab's service and a long-download one, neither with
        the VIP: what VRRP (the student's, or the lab's setup) will hand over."""
        c, service = self.cluster, self.spec.service
        c.configure(self.spec)
        ensure_stream_servers(c)
        downloads = replace(service, port=STREAM_PORT, nat_port=None)
        table = [(s, self.spec.real_servers) for s in (service, downloads)]
        for d in self.directors[:2]:
            c.ipvs_of(d).apply_all(table)
            c.release_service_addresses(d)
        c.forget_neighbours()

    def _stop_daemons(self) -> None:
        """Every daemon the lab's hosts run (keepalived, sync daemons) stopped, and what
        a killed one would leave (the VIP) taken off the directors."""
        c = self.cluster
        stop_daemons([c.pid(h) for h in self.hosts])
        if sync_threads():  # none running (the common case): no process per director
            sync = "ipvsadm --stop-daemon master 2>/dev/null; ipvsadm --stop-daemon backup"
            c.run_each({d: [f"{sync} 2>/dev/null; true"] for d in self.directors},
                       changes_setup=False)  # fmt: skip
        if self.lab.start == "pair":
            for d in self.directors:
                c.release_service_addresses(d)

    def _restore_sysctls(self, values: dict[str, dict[str, str]], *, changes_setup: bool) -> None:
        now = self._sysctls()
        for h in self.hosts:
            undo = {p: v for p, v in values.get(h, {}).items() if now[h].get(p) != v}
            self.cluster.write_sysctls(h, undo, changes_setup=changes_setup)

    def stop(self) -> None:
        if not self._saved or self.cluster.net is None:
            return
        c = self.cluster
        with contextlib.suppress(TestbedError):  # as before the lab, hosts set up afresh
            self._stop_daemons()
            self._restore_sysctls(self._saved, changes_setup=True)
        self._saved = self._started = {}
        if self.lab.start == "pair":  # the second director's table gone, the VIP home
            for d in self.directors[1:]:
                c.ipvs_of(d).flush()
            c.claim_service_addresses()
        c.configure(c.base_spec)

    # -- what students and teachers do ----------------------------------------------------
    def apply(self, steps: tuple[Step, ...]) -> None:
        """Run steps in their hosts, one host after another, in order."""
        for step in steps:
            s = step.render(self.spec)
            try:
                self.cluster.run(s.host, *s.commands)
            except TestbedError as exc:
                raise TestbedError(f"lab {self.lab.name}: a step failed: {exc}") from None

    def check(self) -> list[Outcome]:
        """Every task's verdict on the cluster as it is now (or, for a task with a
        ``within``, as it becomes within that many seconds)."""
        return list(self.outcomes())

    def outcomes(self) -> Iterator[Outcome]:
        """Each task's verdict in the lab's order, as it is reached (a caller that has
        seen enough stops there)."""
        for task in self.lab.tasks:
            yield Outcome(task, self._verdict(task))

    def _verdict(self, task: Task) -> Verdict:
        deadline = time.monotonic() + task.within
        while not (verdict := observe(self.cluster, task.check, self._filled(task.args))).ok:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        return verdict

    def _filled(self, args: dict[str, object]) -> dict[str, object]:
        return {k: fill(v, self.spec) if isinstance(v, str) else v for k, v in args.items()}

    def holder(self) -> str | None:
        """The director that holds the VIP now (None: none does)."""
        vip = self.spec.service.vip
        show = {d.name: [f"ip -o addr show to {vip}"] for d in self.spec.directors}
        out = self.cluster.run_each(show, check=False, changes_setup=False)
        return next((d for d, text in out.items() if text.strip()), None)

    def answer(self) -> Answer:
        """The checker's verdict as `lab NAME --check` prints it: the picture, then the
        report; ok when every task passes."""
        with self.lock:
            outcomes = self.check()
            text = self.picture() + "\n\n" + self.report(outcomes)
        return Answer(report=text, ok=all(o.verdict.ok for o in outcomes))

    def picture(self) -> str:
        return text_picture(self.spec, self.holder())

    def guide(self) -> str:
        lab = self.lab
        tasks = "\n".join(f"  {i}. {fill(t.goal, self.spec)}" for i, t in enumerate(lab.tasks, 1))
        return (
            f"\nLVS lab {lab.name}: {lab.title} ({lab.kind}, about {lab.minutes} min)\n\n"
            f"{self.picture()}\n\n{fill(lab.story, self.spec)}\n\nTasks:\n{tasks}\n\n"
            "Commands here: check (what works so far), tasks, picture, edit FILE, or any host\n"
            "command (d1 ipvsadm -Ln, r1 ip addr, c1 curl ...). Type exit (or Ctrl-D) to end\n"
            "the lab.\n"
        )

    def report(self, outcomes: list[Outcome]) -> str:
        lines = []
        for i, o in enumerate(outcomes, 1):
            mark = "ok  " if o.verdict.ok else "todo"
            lines.append(f"[{mark}] {i}. {fill(o.task.goal, self.spec)}")
            lines.append(f"         saw: {o.verdict.saw}")
            if not o.verdict.ok:
                lines.append(f"         hint: {fill(o.task.hint, self.spec)}")
        done, tasks = sum(o.verdict.ok for o in outcomes), len(self.lab.tasks)
        unchecked = f" ({tasks - len(outcomes)} not checked)" if len(outcomes) < tasks else ""
        lines.append(f"{done} of {tasks} tasks done{unchecked}"
                     + (" - well done!" if done == tasks else ""))  # fmt: skip
        return "\n".join(lines)


def lab_cli(session: LabSession) -> None:
    """Mininet's CLI with the lab's own commands: check, tasks, picture."""
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    class LabCLI(CLI):  # type: ignore[misc]
        prompt = f"lab {session.lab.name}> "

        def onecmd(self, line: str) -> bool:
            with session.lock:  # a check from another terminal waits for the command
                return bool(super().onecmd(line))

        def do_check(self, _line: str) -> None:
            """Check every task of the lab on the live cluster."""
            print(session.report(session.check()), flush=True)

        def do_tasks(self, _line: str) -> None:
            """List the lab's tasks."""
            print(session.guide(), flush=True)

        def do_picture(self, _line: str) -> None:
            """Draw the network, with the VIP where it is now."""
            print(session.picture(), flush=True)

        def do_edit(self, line: str) -> None:
            """Edit a file of the lab (edit d1.conf): it lives in /tmp/lvs-lab."""
            name = line.strip()
            if not name or "/" in name:
                print(f"usage: edit FILE (a file in {WORKDIR}, e.g. d1.conf)", flush=True)
                return
            editor = os.environ.get("EDITOR") or shutil.which("nano") or "vi"
            subprocess.call([editor, f"{WORKDIR}/{name}"])

    setLogLevel("output")  # the CLI prints host commands' output at this level
    with Mailbox(MAILBOXES, session.lab.name).serve(session.answer):
        LabCLI(session.cluster.net)
