"""Shared vocabulary of the scheduler reference models.

A model is given the real servers in the kernel's list order (the order the
netlink dump returns) with their weights, thresholds and connection counts,
and a flow; it returns the real server the kernel picks, or None where the
kernel would find no server. Models that keep state between picks (rr, wrr)
do so exactly where the kernel keeps it (svc->sched_data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, kw_only=True)
class Dest:
    """A real server as the scheduler sees it (struct ip_vs_dest)."""

    name: str
    addr: str  # IPv4 dotted quad
    port: int = 80
    weight: int = 1
    active: int = 0  # activeconns
    inactive: int = 0  # inactconns
    upper: int = 0  # u_threshold (0: none)
    lower: int = 0  # l_threshold
    overloaded: bool = False  # IP_VS_DEST_F_OVERLOAD, set by the kernel from the thresholds


@dataclass(frozen=True, kw_only=True)
class Flow:
    """The packet fields schedulers look at (struct ip_vs_iphdr + ports)."""

    saddr: str
    sport: int
    daddr: str
    dport: int
    protocol: int = 6  # IPPROTO_TCP


class Model:
    """Base class: one subclass per kernel scheduler."""

    name: ClassVar[str]
    source: ClassVar[str]  # the kernel file the model follows
    # True if the choice for a flow is fully determined by the inputs
    # (conformance compares choices); False if it depends on state the test
    # cannot see (conformance compares distributions)
    deterministic: ClassVar[bool] = True
    flags_supported: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        unknown = set(flags) - self.flags_supported
        if unknown:
            raise ValueError(f"{self.name}: unsupported flag(s) {sorted(unknown)}")
        self.dests = list(dests)
        self.flags = frozenset(flags)

    def update(self, dests: Sequence[Dest]) -> None:
        """The real servers changed (ip_vs_*_update_svc / add_dest / del_dest)."""
        self.dests = list(dests)

    def schedule(self, flow: Flow) -> Dest | None:
        raise NotImplementedError
