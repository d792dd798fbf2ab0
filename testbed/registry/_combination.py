"""Which (mode, protocol, family, checksums) combinations a run exercises, by a stated policy.

The product grows fast and each combination costs minutes under emulation,
so the default policy is pairwise: every pair of values of any two
dimensions appears in at least one combination (a covering array of
strength 2), chosen greedily and deterministically. ``full`` is the whole
product, on request.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ..util import TestbedError
from ._checksums import CHECKSUMS, Checksums
from ._family import FAMILIES, Family
from ._mode import MODES, Mode
from ._protocol import PROTOCOLS, Protocol

POLICIES = ("pairwise", "full")


@dataclass(frozen=True)
class Combination:
    """One virtual service shape: forwarding mode, transport protocol, VIP family, and
    who computes the checksums on the way."""

    mode: Mode
    protocol: Protocol
    family: Family
    checksums: Checksums

    @property
    def id(self) -> str:
        return f"{self.mode.name}-{self.protocol.name}-{self.family.name}-{self.checksums.name}"


def _pairs(values: tuple[str, ...]) -> set[tuple[int, str, int, str]]:
    return {(i, values[i], j, values[j]) for i, j in itertools.combinations(range(len(values)), 2)}


def pairwise(dimensions: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """A small list of rows covering every pair of values of any two dimensions.

    Greedy: repeatedly take the row of the full product that covers the most
    pairs not yet covered (the first such row in product order).
    """
    rows = list(itertools.product(*dimensions))
    uncovered = set().union(*(_pairs(r) for r in rows)) if rows else set()
    chosen = []
    while uncovered:
        best = max(rows, key=lambda r: len(_pairs(r) & uncovered))
        chosen.append(best)
        uncovered -= _pairs(best)
    return chosen or rows


def combinations(
    policy: str = "pairwise",
    *,
    modes: Sequence[Mode] | None = None,
    protocols: Sequence[Protocol] | None = None,
    families: Sequence[Family] | None = None,
    checksums: Sequence[Checksums] | None = None,
) -> list[Combination]:
    """The combinations a policy selects (default: every registered entry)."""
    if policy not in POLICIES:
        raise TestbedError(f"unknown combination policy {policy!r} (choose from pairwise, full)")
    dims = (
        modes or MODES.values(),
        protocols or PROTOCOLS.values(),
        families or FAMILIES.values(),
        checksums or CHECKSUMS.values(),
    )
    names = [[e.name for e in d] for d in dims]
    rows = list(itertools.product(*names)) if policy == "full" else pairwise(names)
    return [
        Combination(mode=MODES[m], protocol=PROTOCOLS[p], family=FAMILIES[f],
                    checksums=CHECKSUMS[c])
        for m, p, f, c in rows
    ]  # fmt: skip
