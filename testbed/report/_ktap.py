"""results.ktap: a run's results in KTAP version 1, for kernel CI systems.

One top-level test per conformance module, its tests nested one level
(indented two spaces); a module fails if any of its tests failed or erred
and is skipped if all of them were. Failures carry their assertion lines as
diagnostic lines just before the result; skips and expected failures their
reason as the directive's diagnostic data. Source:
Documentation/dev-tools/ktap.rst (version, plan, result lines, directives
SKIP, XFAIL, ERROR; nesting).
"""

from __future__ import annotations

import re
from typing import Any

_DIAGNOSTIC_LINES = 6  # assertion lines kept per failure: the rest is in report.html


def _description(text: str) -> str:
    """A description may be any words but no '#' (which starts the directive)."""
    return re.sub(r"\s+", " ", text.replace("#", "")).strip()


def _failure_lines(details: str) -> list[str]:
    lines = [line[1:].strip() for line in details.splitlines() if line.startswith("E ")]
    return [line for line in lines if line][:_DIAGNOSTIC_LINES]


def _result(number: int, test: dict[str, Any]) -> list[str]:
    name = _description(test["nodeid"].split("::", 1)[-1])
    outcome, reason = test["outcome"], _description(test.get("skip_reason", ""))
    notes = [f"# {line}" for line in _failure_lines(test.get("details", ""))]
    if outcome == "failed":
        return [*notes, f"not ok {number} {name}"]
    if outcome == "error":
        first = notes[0][2:] if notes else "in set-up or tear-down"
        return [*notes, f"not ok {number} {name} # ERROR {_description(first)}"]
    if outcome == "skipped":
        return [f"ok {number} {name} # SKIP {reason}".rstrip()]
    if outcome == "xfailed":
        return [f"ok {number} {name} # XFAIL {reason}".rstrip()]
    return [f"ok {number} {name}"]


def ktap_text(data: dict[str, Any]) -> str:
    """The KTAP document of a results.json."""

    def module(t: dict[str, Any]) -> str:
        return str(t["nodeid"].split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py"))

    tests = data.get("tests", [])
    by_module: dict[str, list[dict[str, Any]]] = {}
    for test in tests:
        by_module.setdefault(module(test), []).append(test)
    modules = list(by_module.items())
    env = data.get("environment", {})
    out = ["KTAP version 1", f"# lvs-testbed run {data.get('run_id', '?')}"]
    if env.get("kernel"):
        out.append(f"# kernel {env['kernel']} ({env.get('kernel_origin', '?')})")
    out.append(f"1..{len(modules)}")
    for number, (name, members) in enumerate(modules, 1):
        out += ["  KTAP version 1", f"  1..{len(members)}"]
        for i, test in enumerate(members, 1):
            out += [f"  {line}" for line in _result(i, test)]
        outcomes = {t["outcome"] for t in members}
        if outcomes & {"failed", "error"}:
            out.append(f"not ok {number} {name}")
        elif outcomes == {"skipped"}:
            out.append(f"ok {number} {name} # SKIP every test skipped")
        else:
            out.append(f"ok {number} {name}")
    return "\n".join(out) + "\n"
