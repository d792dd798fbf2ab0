"""A lab as data: read from labs/<name>.toml and validated before any host exists.

A lab names the cluster it starts from (the topology's service with some
fields changed, ``bare`` or ``working``, plus the commands that break it),
the tasks a student must achieve (each a check from the vocabulary in
_checks.py with its arguments, and a hint), the reference solution, and the
plausible wrong solutions the suite proves the checker rejects. Commands
and texts may name the topology's addresses: ``{vip}``, ``{dip}``,
``{port}``, ``{nat_port}``, ``{r1}`` (a real server's or client's address),
``{d1}`` / ``{d1_inside}`` (a director's or the router's two addresses),
in a command ``{host}`` (the host it runs in) and ``{dev}`` (its first
interface, ``r1-eth0``). Only such names in braces are placeholders, so a
keepalived.conf block (``vrrp_instance VI_1 {``) is written as it is.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import Registry
from ..topology import ClusterSpec
from ..util import REPO, TestbedError
from ._checks import CHECKS

LABS_DIR = REPO / "labs"
WORKDIR = "/tmp/lvs-lab"  # {labdir}: students' files (a prediction), emptied at each start
KINDS = {
    "build": "build it by hand",
    "troubleshoot": "starts broken: find the fault and fix it",
}
STARTS = {
    "bare": "addressed network and running servers; no IPVS table, real servers untouched",
    "working": "the testbed's working cluster in the lab's mode",
    "pair": "two directors with the same IPVS table (and a long-download service on "
    "port 9000), real servers ready for the mode, the VIP on neither director",
}


@dataclass(frozen=True, kw_only=True)
class Step:
    """Shell commands run in one host (joined with &&, as a student would type them),
    after writing a file there if the step has one (a keepalived.conf, say)."""

    host: str
    run: tuple[str, ...] = ()
    file: str = ""
    text: str = ""

    def render(self, spec: ClusterSpec) -> Step:
        return Step(
            host=self.host,
            run=tuple(fill(c, spec, self.host) for c in self.run),
            file=fill(self.file, spec, self.host),
            text=fill(self.text, spec, self.host),
        )

    @property
    def commands(self) -> tuple[str, ...]:
        """The shell commands, the file's writing first."""
        if not self.file:
            return self.run
        return (f"printf '%s\\n' {shlex.quote(self.text.strip())} > {self.file}", *self.run)

    @property
    def shown(self) -> tuple[str, ...]:
        """The commands as a person types them (a file as a here-document)."""
        if not self.file:
            return self.run
        return (f"cat > {self.file} <<'EOF'\n{self.text.strip()}\nEOF", *self.run)


@dataclass(frozen=True, kw_only=True)
class Task:
    """One thing the student must achieve, and how the checker sees it done."""

    name: str  # short id: "answers", "arp"
    goal: str  # shown to the student
    check: str  # a name in CHECKS
    args: dict[str, Any] = field(default_factory=dict)
    hint: str  # shown when the check fails: the concept, not the command
    # seconds the checker gives daemons to get there (a VRRP election, a health
    # checker's first round): the check is repeated until it passes or this is over
    within: float = 0.0


@dataclass(frozen=True, kw_only=True)
class WrongTry:
    """A plausible wrong solution: after it, the named tasks must still fail."""

    title: str
    steps: tuple[Step, ...]
    fails: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Lab:
    name: str
    title: str
    kind: str
    order: int  # place in the list of its kind (a teaching sequence)
    minutes: int
    story: str
    service: dict[str, Any]  # ClusterSpec.with_service changes
    weights: dict[str, int]  # real server -> weight
    start: str
    setup: tuple[Step, ...]  # run after the start, unseen: a troubleshooting lab's fault
    tasks: tuple[Task, ...]
    solution: tuple[Step, ...]
    wrong: tuple[WrongTry, ...]
    source: Path

    def spec(self, base: ClusterSpec) -> ClusterSpec:
        """The cluster the lab starts from (its service and weights on ``base``)."""
        spec = base.with_service(**self.service)
        if self.weights:
            unknown = set(self.weights) - {r.name for r in spec.real_servers}
            if unknown:
                raise TestbedError(f"lab {self.name}: weights name no real server {unknown}")
            spec = spec.with_real_servers(*(
                dataclasses.replace(r, weight=self.weights.get(r.name, r.weight))
                for r in spec.real_servers
            ))  # fmt: skip
        return spec

    def unfit(self, base: ClusterSpec) -> str | None:
        """Why the lab cannot run on a topology (a host it names is missing), or None."""
        named = {s.host for s in (*self.setup, *self.solution,
                                  *(s for w in self.wrong for s in w.steps))}  # fmt: skip
        named |= set(self.weights)
        if self.start == "pair" and (reason := base.needs(directors=2)):
            return f"lab {self.name}: {reason}"
        for t in self.tasks:
            for key in ("client", "director", "host"):
                if isinstance(t.args.get(key), str):
                    named.add(t.args[key])
            named |= set(t.args.get("servers") or ()) | set(t.args.get("hosts") or ())
        missing = sorted(named - {h.name for h in base.hosts})
        return (
            f"lab {self.name} names hosts the topology lacks: {', '.join(missing)}"
            if missing
            else None
        )

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise TestbedError(f"lab {self.name}: no task {name!r}")

    def solution_text(self, spec: ClusterSpec) -> str:
        """The reference solution as a teacher reads it: host, then its commands."""
        return "\n".join(f"{s.host}> {c}" for step in self.solution
                         for s in [step.render(spec)] for c in s.shown)  # fmt: skip


def placeholders(spec: ClusterSpec) -> dict[str, str]:
    """What a lab's commands and texts may name, for one cluster."""
    s = spec.service
    values = {
        "vip": str(s.vip),
        "dip": str(s.dip),
        "port": str(s.port),
        "nat_port": str(s.real_port),
        "outside": str(spec.outside),
        "inside": str(spec.inside),
        "labdir": WORKDIR,
    }
    for h in (*spec.clients, *spec.real_servers):
        values[h.name] = str(h.ip)
    for t in (spec.router, *spec.directors):
        values[t.name], values[f"{t.name}_inside"] = str(t.outside), str(t.inside)
    return values


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(text: str, spec: ClusterSpec, host: str | None = None) -> str:
    """A lab's text with the cluster's addresses; in a host's command, ``{host}`` is
    the host and ``{dev}`` its first interface (``r1-eth0``)."""
    values = placeholders(spec) | ({"host": host, "dev": f"{host}-eth0"} if host else {})

    def value(m: re.Match[str]) -> str:
        if m[1] not in values:
            raise TestbedError(f"lab text {text!r}: unknown placeholder {m[1]!r}")
        return values[m[1]]

    return _PLACEHOLDER.sub(value, text)


# -- reading --------------------------------------------------------------------------------


def _need(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise TestbedError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TestbedError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _steps(items: object, where: str) -> tuple[Step, ...]:
    if not isinstance(items, list):
        raise TestbedError(f"{where}: must be a list of {{host, run}} tables")
    steps = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise TestbedError(f"{w}: must be a table with host and run")
        run = item.get("run", [])
        file, text = item.get("file", ""), item.get("text", "")
        if not isinstance(run, list) or not all(isinstance(c, str) for c in run):
            raise TestbedError(f"{w}: run must be a list of commands")
        if not isinstance(file, str) or not isinstance(text, str) or bool(file) != bool(text):
            raise TestbedError(f"{w}: a file to write needs both file (its path) and text")
        if not run and not file:
            raise TestbedError(f"{w}: a step needs commands (run) or a file to write")
        hosts = item.get("host")
        hosts = [hosts] if isinstance(hosts, str) else hosts  # one host, or the same in several
        if not hosts or not all(isinstance(h, str) for h in hosts):
            raise TestbedError(f"{w}: host must name a host or a list of hosts")
        steps += [Step(host=h, run=tuple(run), file=file, text=text) for h in hosts]
    return tuple(steps)


def _task(item: object, where: str) -> Task:
    if not isinstance(item, dict):
        raise TestbedError(f"{where}: must be a table")
    check = CHECKS[_need(item, "check", str, where)]
    args = item.get("with", {})
    if not isinstance(args, dict):
        raise TestbedError(f"{where}: with must be a table of the check's arguments")
    params = inspect.signature(check.observe).parameters
    unknown = set(args) - set(list(params)[1:])
    if unknown:
        raise TestbedError(
            f"{where}: check {check.name} takes no {', '.join(sorted(unknown))} "
            f"(it takes {', '.join(list(params)[1:])})"
        )
    missing = [
        p for p, v in list(params.items())[1:] if v.default is inspect.Parameter.empty
        and p not in args
    ]  # fmt: skip
    if missing:
        raise TestbedError(f"{where}: check {check.name} needs {', '.join(missing)}")
    return Task(
        name=_need(item, "name", str, where),
        goal=_need(item, "goal", str, where).strip(),
        check=check.name,
        args=dict(args),
        hint=_need(item, "hint", str, where).strip(),
        within=_within(item, where),
    )


def _within(item: dict[str, Any], where: str) -> float:
    within = item.get("within", 0)
    if isinstance(within, bool) or not isinstance(within, int | float) or not 0 <= within <= 60:
        raise TestbedError(f"{where}: within must be seconds (0 to 60), not {within!r}")
    return float(within)


def read_lab(path: Path) -> Lab:
    """One lab file, validated; bad input fails in one line naming the file."""
    where = f"lab {path.name}"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TestbedError(f"{where}: {exc}") from None
    kind = _need(data, "kind", str, where)
    if kind not in KINDS:
        raise TestbedError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    start = data.get("start", "bare" if kind == "build" else "working")
    if start not in STARTS:
        raise TestbedError(f"{where}: start {start!r} is not one of {', '.join(STARTS)}")
    tasks = tuple(_task(t, f"{where} task[{i}]") for i, t in enumerate(data.get("task", [])))
    if not tasks:
        raise TestbedError(f"{where}: no [[task]]")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise TestbedError(f"{where}: task names repeat: {names}")
    solution = _steps(_need(data, "solution", list, where), f"{where} solution")
    wrong = []
    for i, item in enumerate(data.get("wrong", [])):
        w = f"{where} wrong[{i}]"
        fails = tuple(_need(item, "fails", list, w))
        if not fails or set(fails) - set(names):
            raise TestbedError(f"{w}: fails must name tasks of the lab ({', '.join(names)})")
        # the reference solution's steps in some hosts, then the wrong ones
        kept = item.get("solution_for", [])
        steps = tuple(s for s in solution if s.host in kept)
        steps += _steps(item.get("steps", []), f"{w} steps")
        wrong.append(WrongTry(title=_need(item, "title", str, w), fails=fails, steps=steps))
    weights = data.get("weights", {})
    if not isinstance(weights, dict) or not all(
        isinstance(v, int) and v >= 0 for v in weights.values()
    ):
        raise TestbedError(f"{where}: weights must map real servers to weights (0 or more)")
    lab = Lab(
        name=path.stem,
        title=_need(data, "title", str, where),
        kind=kind,
        order=data.get("order", 100),
        minutes=_need(data, "minutes", int, where),
        story=_need(data, "story", str, where).strip(),
        service=dict(data.get("service", {})),
        weights=dict(weights),
        start=start,
        setup=_steps(data.get("setup", []), f"{where} setup"),
        tasks=tasks,
        solution=solution,
        wrong=tuple(wrong),
        source=path,
    )
    if kind == "troubleshoot" and not lab.setup:
        raise TestbedError(f"{where}: a troubleshooting lab needs [[setup]] steps (its fault)")
    return lab


def load_labs(directory: Path = LABS_DIR) -> Registry[Lab]:
    """Every lab in ``directory``, builds first, then troubleshooting, each by name."""
    labs: Registry[Lab] = Registry("lab")
    read = [read_lab(p) for p in sorted(directory.glob("*.toml"))]
    for lab in sorted(read, key=lambda lab: (list(KINDS).index(lab.kind), lab.order, lab.name)):
        labs.register(lab)
    return labs
