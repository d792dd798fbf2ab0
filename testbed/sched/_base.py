"""Shared vocabulary of the scheduler reference models.

A model is given the real servers in the kernel's list order (the order the
netlink dump returns) with their weights, thresholds and connection counts,
and a flow; it returns the real server the kernel picks, or None where the
kernel would find no server. Models that keep state between picks (rr, wrr)
do so exactly where the kernel keeps it (svc->sched_data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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


# --------------------------------------------------------------------------
# what several schedulers share (each model cites where it uses these)


def dest_key(dest: Dest) -> tuple[str, int]:
    """How the kernel tells real servers of one service apart: address and port."""
    return (dest.addr, dest.port)


def conn_overhead(dest: Dest) -> int:
    """``ip_vs_dest_conn_overhead()`` (include/net/ip_vs.h): active*256 + inactive."""
    return (dest.active << 8) + dest.inactive


def total_conns(dest: Dest) -> int:
    """``ip_vs_dest_totalconns()`` (ip_vs_conn.c): active + inactive (not persistent)."""
    return dest.active + dest.inactive


def list_order(added: Iterable[Dest]) -> list[Dest]:
    """The kernel's list order of servers added one by one in the order ``added``.

    ``list_add_rcu()`` inserts at the head of svc->destinations, so the
    newest server comes first (ip_vs_ctl.c, ``__ip_vs_update_dest``).
    """
    return list(reversed(list(added)))


def is_available(dest: Dest) -> bool:
    """Weight > 0 and not IP_VS_DEST_F_OVERLOAD: the test rr, lc, nq, fo, twos apply,
    and the negation of sh's, mh's and dh's ``is_unavailable()``."""
    return not dest.overloaded and dest.weight > 0


def weighted_least(
    dests: Sequence[Dest], overhead: Callable[[Dest], int] = conn_overhead
) -> Dest | None:
    """The weighted-least loop of wlc, sed, lblc and lblcr.

    The first server in list order that is available is the candidate; each
    later server that is not OVERLOAD-flagged replaces it if ``loh * w_dest >
    doh * w_least`` (64-bit products in the kernel, strict), so the smallest
    overhead/weight wins, the first in list order on a tie. A weight-0 server
    can never win the second stage (``loh * 0 > doh * w`` is false for doh, w
    >= 0). None if no server is available.
    """
    start = next((i for i, d in enumerate(dests) if is_available(d)), None)
    if start is None:
        return None
    least = dests[start]
    loh = overhead(least)
    for d in dests[start + 1 :]:
        if d.overloaded:
            continue
        doh = overhead(d)
        if loh * d.weight > doh * least.weight:
            least, loh = d, doh
    return least
