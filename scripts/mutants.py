#!/usr/bin/env python3
"""The suite's power, measured: IPVS mutants built, booted and caught (or not).

Each mutant in conformance/mutants.toml is a one-line change to the guest
kernel's IPVS source (Debian's linux-source for the installed kernel's
series). A batch's mutants are applied together, the IPVS modules are built
against the kernel's linux-headers (about 30 s), laid into a copy of the
kernel's module tree (hard links, the IPVS modules replaced), and the
batch's tests run in one guest booted from it (``lvs-testbed run --kernel``).
A pristine build runs every mutant's tests first: they must all pass there,
or a catch would prove nothing. A mutant is caught when one of its own tests
fails or errs. Results: ``results/mutants-<time>/mutants.json`` and a table.

    .venv/bin/python scripts/mutants.py                  # every batch
    .venv/bin/python scripts/mutants.py --batch schedulers
    .venv/bin/python scripts/mutants.py --list           # what would run

Needs root (apt, the guest); installs linux-source-<series> and
linux-headers-<version> if they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.guest import installed_kernels  # noqa: E402
from testbed.util import TestbedError  # noqa: E402

MUTANTS = REPO / "conformance" / "mutants.toml"
IPVS = "net/netfilter/ipvs"
BASELINE = "pristine"


@dataclass(frozen=True)
class Mutant:
    name: str
    batch: str
    file: str
    find: str
    replace: str
    tests: str  # a pytest -k expression
    why: str
    nth: int = 0  # which occurrence of ``find`` (0: it must be the only one)

    def apply(self, source: Path) -> None:
        path = source / self.file
        lines = path.read_text().splitlines(keepends=True)
        want = _norm(self.find)
        hits = [i for i, line in enumerate(lines) if _norm(line) == want]
        if not hits or (not self.nth and len(hits) > 1) or self.nth > len(hits):
            raise TestbedError(f"mutant {self.name}: {self.file} has {len(hits)} lines "
                               f"{self.find!r}")  # fmt: skip
        i = hits[(self.nth or 1) - 1]
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = indent + self.replace + "\n"
        path.write_text("".join(lines))


def _norm(line: str) -> str:
    return " ".join(line.split())


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    return [Mutant(**raw) for raw in tomllib.loads(path.read_text())["mutant"]]


def _say(msg: str) -> None:
    print(f"[mutants] {msg}", flush=True)


def _sh(*cmd: str, log: Path | None = None) -> None:
    out = log.open("a") if log else None
    try:
        subprocess.run(cmd, check=True, stdout=out or subprocess.DEVNULL,
                       stderr=subprocess.STDOUT if out else subprocess.PIPE)  # fmt: skip
    finally:
        if out:
            out.close()


def pristine_source(version: str, work: Path) -> Path:
    """The kernel series' IPVS source from Debian's linux-source, and the headers."""
    series = ".".join(version.split(".")[:2])
    tarball = Path(f"/usr/src/linux-source-{series}.tar.xz")
    headers = Path(f"/usr/src/linux-headers-{version}")
    missing = [p for p, f in ((f"linux-source-{series}", tarball),
                              (f"linux-headers-{version}", headers)) if not f.exists()]  # fmt: skip
    if missing:
        _say(f"installing {' '.join(missing)}")
        _sh("apt-get", "install", "-y", "-q", *missing)
    source = work / "source"
    if not (source / "Makefile").exists():
        _say(f"extracting {IPVS} from {tarball.name}")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if f"/{IPVS}/" in m.name]
            tar.extractall(work / "tar", members=members)  # Debian's own tarball
        shutil.copytree(next((work / "tar").glob(f"*/{IPVS}")), source)
    return source


def build_batch(name: str, mutants: list[Mutant], version: str, source: Path,
                work: Path) -> Path:  # fmt: skip
    """The kernel tree of one batch: the installed kernel, its IPVS modules rebuilt."""
    here = work / name
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(source, here / "ipvs")
    for m in mutants:
        m.apply(here / "ipvs")
    log = here / "build.log"
    started = time.monotonic()
    _sh("make", "-C", f"/usr/src/linux-headers-{version}", f"M={here / 'ipvs'}", "modules",
        f"-j{len(os.sched_getaffinity(0))}", log=log)  # fmt: skip
    _say(f"{name}: built {len(list((here / 'ipvs').glob('*.ko')))} modules in "
         f"{time.monotonic() - started:.0f} s")  # fmt: skip
    root = here / "root"
    (root / "boot").mkdir(parents=True)
    shutil.copy2(f"/boot/vmlinuz-{version}", root / "boot")
    modules = root / "lib" / "modules" / version
    modules.parent.mkdir(parents=True)
    _sh("cp", "-al", f"/lib/modules/{version}", str(modules))  # hard links: no copy
    for ko in (here / "ipvs").glob("*.ko"):
        target = modules / "kernel" / IPVS / ko.name
        target.unlink(missing_ok=True)
        shutil.copy2(ko, target)
    _sh("depmod", "-b", str(root), version)
    return root / "boot" / f"vmlinuz-{version}"


def selected(expr: str) -> set[str]:
    """The node ids a -k expression selects (collected here, no guest)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "conformance", "-k", expr],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    return {line for line in done.stdout.splitlines() if "::" in line}


def run_batch(vmlinuz: Path, expr: str, results: Path, log: Path) -> dict[str, str]:
    """Outcome per node id of the tests ``expr`` selects, in a guest booted from it."""
    cmd = [sys.executable, "-m", "testbed.cli", "run", "--kernel", str(vmlinuz),
           "-k", expr, "--results", str(results)]  # fmt: skip
    with log.open("w") as out:
        subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    runs = sorted(results.glob("*/results.json"))
    if not runs:
        return {}
    return {t["nodeid"]: t["outcome"] for t in json.loads(runs[-1].read_text())["tests"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", action="append", help="only these batches (repeatable)")
    p.add_argument("--list", action="store_true", help="show the batches and tests, run nothing")
    p.add_argument("--results", default=str(REPO / "results"))
    args = p.parse_args()
    mutants = load_mutants()
    batches: dict[str, list[Mutant]] = {}
    for m in mutants:
        if not args.batch or m.batch in args.batch:
            batches.setdefault(m.batch, []).append(m)
    tests = {m.name: selected(m.tests) for ms in batches.values() for m in ms}
    for name, ms in batches.items():
        for m in ms:
            _say(f"{name}: {m.name} ({m.file}): {len(tests[m.name])} tests")
            if not tests[m.name]:
                raise TestbedError(f"mutant {m.name}: -k {m.tests!r} selects no test")
    if args.list:
        return 0
    kernel = installed_kernels()[0]
    work = Path(args.results) / f"mutants-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    source = pristine_source(kernel.version, work)
    for ms in batches.values():  # every mutant applies to the pristine source
        for m in ms:
            m.apply(shutil.copytree(source, work / "check", dirs_exist_ok=True))
        shutil.rmtree(work / "check")
    every = " or ".join(f"({m.tests})" for ms in batches.values() for m in ms)
    _say(f"{BASELINE}: every mutant's tests on an unmutated build")
    baseline = run_batch(build_batch(BASELINE, [], kernel.version, source, work), every,
                         work / BASELINE / "results", work / BASELINE / "run.log")  # fmt: skip
    red = sorted(n for n, o in baseline.items() if o in ("failed", "error"))
    rows: list[dict[str, object]] = []
    seconds: dict[str, float] = {}
    for name, ms in batches.items():
        _say(f"{name}: {', '.join(m.name for m in ms)}")
        started = time.monotonic()
        vmlinuz = build_batch(name, ms, kernel.version, source, work)
        expr = " or ".join(f"({m.tests})" for m in ms)
        seen = run_batch(vmlinuz, expr, work / name / "results", work / name / "run.log")
        seconds[name] = round(time.monotonic() - started)
        for m in ms:
            rows.append(_verdict(m, {n: seen.get(n, "absent") for n in sorted(tests[m.name])},
                                 red))  # fmt: skip
            _say(f"  {m.name}: {rows[-1]['verdict']}")
    killed = sum(1 for r in rows if r["verdict"] == "caught")
    report = {"kernel": kernel.version, "kill_rate": f"{killed}/{len(rows)}",
              "baseline_failures": red, "batch_seconds": seconds, "mutants": rows}  # fmt: skip
    (work / "mutants.json").write_text(json.dumps(report, indent=2))
    _say(f"kill rate {killed}/{len(rows)}; baseline failures {len(red)}; {work / 'mutants.json'}")
    return 0 if not red else 1


def _verdict(m: Mutant, outcomes: dict[str, str], baseline_red: list[str]) -> dict[str, object]:
    """Caught: one of the mutant's tests failed or erred (and passed unmutated)."""
    caught = [n for n, o in outcomes.items() if o in ("failed", "error") and n not in baseline_red]
    absent = [n for n, o in outcomes.items() if o == "absent"]
    verdict = "caught" if caught else ("not run" if len(absent) == len(outcomes) else "survived")
    return {"name": m.name, "batch": m.batch, "file": m.file, "why": m.why,
            "change": f"{m.find} -> {m.replace}", "tests": len(outcomes),
            "verdict": verdict, "caught_by": caught, "absent": absent}  # fmt: skip


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestbedError as exc:
        print(f"mutants: error: {exc}", file=sys.stderr)
        sys.exit(2)
