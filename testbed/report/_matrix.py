"""Several kernels' runs of the suite side by side: which tests differ, which ledger
entry explains each difference, and which entries the runs contradict.

    comparison = compare_runs({"6.1.0-57-amd64": results_a, "6.12.117": results_b}, ledger)
    comparison.unexplained   # differences no entry explains: the matrix run fails
    comparison.stale         # entries a run contradicts
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kernel import LedgerEntry


@dataclass(frozen=True)
class Difference:
    nodeid: str
    outcomes: dict[str, str]  # kernel -> outcome ("absent": not run there)
    explained_by: str | None  # the ledger entry that predicts every outcome


@dataclass(frozen=True)
class Comparison:
    kernels: list[str]
    outcomes: dict[str, dict[str, str]]  # nodeid -> kernel -> outcome
    differences: list[Difference]
    stale: list[str] = field(default_factory=list)  # "entry: why"
    profiles: list[str] = field(default_factory=lambda: ["full"])  # the runs' profiles
    not_compared: int = 0  # tests only some kernels ran, the profiles differing

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if d.explained_by is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "kernels": self.kernels,
            "differences": [d.__dict__ for d in self.differences],
            "unexplained": [d.nodeid for d in self.unexplained],
            "stale": self.stale,
            "outcomes": self.outcomes,
            "profiles": self.profiles,
            "not_compared": self.not_compared,
        }

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"matrix: {len(self.outcomes)} tests on {', '.join(self.kernels)}: "
                 f"{len(self.differences)} differ, {len(self.unexplained)} unexplained, "
                 f"{len(self.stale)} stale ledger entries"]  # fmt: skip
        if self.not_compared:
            lines.append(f"  ({self.not_compared} more ran on some kernels only: the profiles "
                         f"differ, {' and '.join(self.profiles)})")  # fmt: skip
        for d in self.differences:
            why = f"ledger: {d.explained_by}" if d.explained_by else "UNEXPLAINED"
            shown = ", ".join(f"{k} {o}" for k, o in d.outcomes.items())
            lines.append(f"  {d.nodeid}: {shown} ({why})")
        lines += [f"  stale ledger entry {s}" for s in self.stale]
        return "\n".join(lines)


def _features(run: dict[str, Any]) -> dict[str, bool]:
    return dict(run.get("environment", {}).get("features", {}))


def compare_runs(runs: dict[str, dict[str, Any]], ledger: list[LedgerEntry]) -> Comparison:
    """``runs``: kernel -> its results.json. A test that did not run on a kernel counts
    as "absent" there (a narrower selection is a difference too), unless the runs were
    made with different profiles (CI: the full profile on one kernel, smoke on others):
    then the tests every kernel ran are compared, and the rest counted apart."""
    kernels = list(runs)
    by_kernel = {k: {t["nodeid"]: t["outcome"] for t in r.get("tests", [])}
                 for k, r in runs.items()}  # fmt: skip
    nodeids = sorted({n for ran in by_kernel.values() for n in ran})
    profile_of = {k: str(r.get("profile", "full")) for k, r in runs.items()}
    profiles = sorted(set(profile_of.values()))
    not_compared = 0
    if len(profiles) > 1:  # a test some profile never runs is not compared; one that a
        # run of every profile ran is, and where a run of the same profile lacks it: absent
        common = [n for n in nodeids
                  if all(any(n in by_kernel[k] for k in runs if profile_of[k] == p)
                         for p in profiles)]  # fmt: skip
        not_compared, nodeids = len(nodeids) - len(common), common
    outcomes = {n: {k: by_kernel[k].get(n, "absent") for k in kernels} for n in nodeids}
    features = {k: _features(r) for k, r in runs.items()}

    def predicts(entry: LedgerEntry, seen: dict[str, str]) -> bool:
        return all(
            entry.name in features[k] and seen[k] == entry.expects(features[k][entry.name])
            for k in kernels
        )

    differences = []
    for nodeid, seen in outcomes.items():
        if len(set(seen.values())) > 1:
            explained = next((e.name for e in ledger if e.covers(nodeid) and predicts(e, seen)),
                             None)  # fmt: skip
            differences.append(Difference(nodeid, seen, explained))
    stale = []
    for entry in ledger:
        covered = {n: seen for n, seen in outcomes.items()
                   if entry.covers(n) and "absent" not in seen.values()}  # fmt: skip
        wrong = [n for n, seen in covered.items() if not predicts(entry, seen)]
        if wrong:
            stale.append(f"{entry.name}: {len(wrong)} of its tests contradict it, e.g. {wrong[0]}")
    return Comparison(kernels=kernels, outcomes=outcomes, differences=differences, stale=stale,
                      profiles=profiles, not_compared=not_compared)  # fmt: skip


# observed figures set side by side per kernel: (record kind, its numeric fields)
FIGURES = (
    ("failover", ("takeover_s", "service_restored_s", "failback_s")),
    ("sync", ("sync_lag_s", "takeover_s", "gap_s")),
    ("health", ("removed_s", "restored_s")),
    ("forwarding", ("exchange_s",)),
)


def observed_figures(run: dict[str, Any]) -> dict[str, float]:
    """``"<kind> <key> <field>"`` -> value for the figures worth comparing across kernels."""
    wanted = dict(FIGURES)
    out = {}
    for record in run.get("observations", []):
        for name in wanted.get(record.get("kind"), ()):
            value = record.get(name)
            if isinstance(value, int | float):
                out[f"{record['kind']} {record.get('key', '')} {name}"] = round(value, 3)
    return out


_COLOURS = {"passed": "#cfc", "failed": "#fcc", "error": "#fcc", "skipped": "#eee",
            "xfailed": "#ffd", "absent": "#fff"}  # fmt: skip


def render_matrix(comparison: Comparison, runs: dict[str, dict[str, Any]],
                  reports: dict[str, Path], top: Path) -> str:  # fmt: skip
    """matrix.html: test x kernel, differing rows first with the entry that explains
    them; each cell links to that kernel's report; observed figures side by side."""
    esc = html.escape
    kernels = comparison.kernels
    head = "".join(
        f'<th><a href="{esc(os.path.relpath(reports[k], top))}">{esc(k)}</a><br>'
        f"<small>{esc(runs[k].get('environment', {}).get('kernel', ''))}</small></th>"
        for k in kernels
    )
    explained = {d.nodeid: d.explained_by or "UNEXPLAINED" for d in comparison.differences}
    order = sorted(comparison.outcomes, key=lambda n: (n not in explained, n))
    rows = []
    links = {k: esc(os.path.relpath(reports[k], top)) for k in kernels}
    for nodeid in order:
        seen = comparison.outcomes[nodeid]
        cells = "".join(
            f'<td style="background:{_COLOURS.get(seen[k], "#fff")}">'
            f'<a href="{links[k]}#{esc(nodeid)}">{esc(seen[k])}</a></td>'
            for k in kernels
        )
        rows.append(
            f"<tr><td>{esc(nodeid)}</td>{cells}<td>{esc(explained.get(nodeid, ''))}</td></tr>"
        )
    timings = {k: dict(runs[k].get("timings", {})) for k in kernels}
    observed = {k: observed_figures(runs[k]) for k in kernels}
    for k in kernels:  # the run's own phases first, then what the tests measured
        observed[k] = {n: timings[k].get(n, "") for n in ("guest_boot_s", "topology_build_s",
                                                         "suite_s")} | observed[k]  # fmt: skip
    names = list(dict.fromkeys(n for k in kernels for n in observed[k]))
    figures = "".join(
        f"<tr><td>{esc(name)}</td>"
        + "".join(f"<td>{esc(str(observed[k].get(name, '')))}</td>" for k in kernels)
        + "</tr>"
        for name in names
    )
    stale = "".join(f"<li>{esc(s)}</li>" for s in comparison.stale) or "<li>none</li>"
    return (
        "<!doctype html><meta charset=utf-8><title>LVS testbed: kernel matrix</title>"
        f"<h1>Kernel matrix</h1><pre>{esc(comparison.summary())}</pre>"
        f"<h2>Stale ledger entries</h2><ul>{stale}</ul>"
        f"<h2>Timings and observed figures (s)</h2>"
        f"<table border=1><tr><th></th>{head}</tr>{figures}</table>"
        f"<h2>Tests</h2><table border=1><tr><th>test</th>{head}<th>ledger</th></tr>"
        + "".join(rows)
        + "</table>"
    )


# git bisect run: 0 good, 1 bad, 125 this commit cannot be tested
GOOD, BAD, UNTESTABLE = 0, 1, 125
_BROKEN = ("failed", "error")


def bisect_verdict(
    good: dict[str, Any], candidate: dict[str, Any], ledger: list[LedgerEntry]
) -> tuple[int, list[str]]:
    """One bisection step: ``candidate`` against a known-good run, as an exit code and
    the lines that explain it. Bad: a test that passed in the good run fails or errs,
    and no ledger entry predicts it; untestable: the candidate ran no test or was cut
    short (a kernel that does not boot, a suite interrupted)."""
    tests = candidate.get("tests", [])
    if not tests or candidate.get("exit_status") not in (0, 1):
        return UNTESTABLE, [
            f"the candidate run cannot be judged: {len(tests)} tests, "
            f"pytest exit status {candidate.get('exit_status')}"
        ]
    comparison = compare_runs({"good": good, "candidate": candidate}, ledger)
    regressed = [
        d for d in comparison.unexplained
        if d.outcomes["good"] == "passed" and d.outcomes["candidate"] in _BROKEN
    ]  # fmt: skip
    lines = [f"regressed: {d.nodeid} (good: passed, candidate: {d.outcomes['candidate']})"
             for d in regressed]  # fmt: skip
    lines += [
        f"differs: {d.nodeid} ({', '.join(f'{k} {o}' for k, o in d.outcomes.items())}; "
        f"{'ledger: ' + d.explained_by if d.explained_by else 'not a regression'})"
        for d in comparison.differences if d not in regressed
    ]  # fmt: skip
    return (BAD if regressed else GOOD), lines
