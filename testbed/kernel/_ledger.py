"""The ledger of expected behaviour differences between kernels, kept as data in
conformance/kernel-ledger.toml.

Each entry names a behaviour, the feature probe that tells whether a kernel has
it (a module, a sysctl, a /proc file: never a version string), the tests it
changes and their outcome with and without the feature, and its source::

    [[entry]]
    name = "twos"
    behaviour = "the twos scheduler exists"
    probe = { module = "ip_vs_twos" }
    tests = ["conformance/test_schedulers.py::*twos*"]
    present = "passed"
    absent = "skipped"
    source = "net/netfilter/ipvs/ip_vs_twos.c (Linux 6.2)"

A run records every entry's probe in results.json (``features``); a matrix
run explains a test's differing outcomes with the entries whose probes differ.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..util import REPO, TestbedError
from ._probe import modprobe

LEDGER = REPO / "conformance" / "kernel-ledger.toml"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
_PROBES = ("module", "sysctl", "proc")


@dataclass(frozen=True)
class Probe:
    """How a kernel is recognised as having a feature."""

    kind: str  # module, sysctl (under net.ipv4.vs) or proc (a path)
    name: str

    def __post_init__(self) -> None:
        if self.kind not in _PROBES:
            raise TestbedError(f"unknown probe {self.kind!r} (choose from {', '.join(_PROBES)})")

    def holds(self) -> bool:
        """Whether the running kernel has the feature (loading ip_vs first)."""
        if self.kind == "module":
            return modprobe(self.name)
        modprobe("ip_vs")
        if self.kind == "sysctl":
            return Path("/proc/sys/net/ipv4/vs", self.name).exists()
        return Path(self.name).exists()

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class LedgerEntry:
    name: str
    behaviour: str
    probe: Probe
    tests: tuple[str, ...]  # fnmatch patterns over test node ids
    present: str  # the tests' outcome on a kernel with the feature
    absent: str  # and without it
    source: str

    def __post_init__(self) -> None:
        for outcome in (self.present, self.absent):
            if outcome not in OUTCOMES:
                raise TestbedError(f"ledger entry {self.name}: unknown outcome {outcome!r}")

    def covers(self, nodeid: str) -> bool:
        return any(fnmatch.fnmatchcase(nodeid, p) for p in self.tests)

    def expects(self, has_feature: bool) -> str:
        return self.present if has_feature else self.absent


def load_ledger(path: Path = LEDGER) -> list[LedgerEntry]:
    """The ledger's entries; a malformed one fails in one line naming it."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TestbedError(f"kernel ledger {path}: {exc}") from None
    entries = []
    for raw in data.get("entry", []):
        try:
            [(kind, name)] = raw["probe"].items()
            entries.append(LedgerEntry(
                name=raw["name"], behaviour=raw["behaviour"], probe=Probe(kind, name),
                tests=tuple(raw["tests"]), present=raw["present"], absent=raw["absent"],
                source=raw["source"]))  # fmt: skip
        except (KeyError, ValueError, TypeError) as exc:
            raise TestbedError(f"kernel ledger {path}: entry {raw.get('name', '?')!r}: "
                               f"missing or malformed {exc}") from None  # fmt: skip
    names = [e.name for e in entries]
    if len(names) != len(set(names)):
        raise TestbedError(f"kernel ledger {path}: an entry name is used twice")
    return entries


def probe_features(entries: list[LedgerEntry]) -> dict[str, bool]:
    """Every entry's probe on the running kernel, by entry name."""
    return {e.name: e.probe.holds() for e in entries}
