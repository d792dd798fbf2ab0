"""Reference models of the counter- and weight-driven IPVS schedulers.

rr, wrr, lc, wlc, sed, nq, fo, ovf and twos: the schedulers that look at the
real servers' weights, flags and connection counters but not at the packet.
Each class follows one file of the kernel's net/netfilter/ipvs/; the
docstrings cite it and spell out the comparisons, the tie-breaks and the state
kept in svc->sched_data.

Facts shared by all of them:

* The list order. ``__ip_vs_update_dest()`` (ip_vs_ctl.c) links a new real
  server with ``list_add_rcu(&dest->n_list, &svc->destinations)``, i.e. at the
  *head*: the list (and the netlink dump, and ``ipvsadm -Ln``) shows the most
  recently added server first. Editing a server (``ipvsadm -e``) does not move
  it; deleting and re-adding one moves it to the head. See
  :func:`testbed.sched.list_order`.
* The scheduler hooks. Adding a server calls ``sched->add_dest``, editing one
  (any ``ipvsadm -e``, even with unchanged values) calls ``sched->upd_dest``,
  deleting one calls ``sched->del_dest``. Of the schedulers here only wrr
  (all three: ``ip_vs_wrr_dest_changed``) and rr (``del_dest`` only) have hooks.
* ``IP_VS_DEST_F_OVERLOAD`` is never computed by a scheduler: it is set and
  cleared when connections are bound to and unbound from the server
  (ip_vs_conn.c) and when the thresholds are edited (ip_vs_ctl.c). The
  schedulers only skip flagged servers. :func:`overloaded_after` states the
  rules; the models read ``Dest.overloaded``.
* ``ip_vs_dest_conn_overhead()`` (include/net/ip_vs.h) is
  ``(activeconns << 8) + inactconns``: lc, wlc and twos use it; sed and nq use
  ``activeconns + 1``; ovf uses ``activeconns``; fo and rr/wrr use no counter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Literal

from ._base import (
    Dest,
    Flow,
    Model,
    conn_overhead,
    dest_key,
    is_available,
    total_conns,
    weighted_least,
)

__all__ = [
    "MODELS",
    "LeastConnection",
    "NeverQueue",
    "Overflow",
    "PowerOfTwoChoices",
    "RoundRobin",
    "ShortestExpectedDelay",
    "WeightedFailover",
    "WeightedLeastConnection",
    "WeightedRoundRobin",
    "apply_overload",
    "overloaded_after",
]

# --------------------------------------------------------------------------
# shared helpers


def _s32(value: int) -> int:
    """Wrap to a signed 32-bit C int (the kernel builds with -fno-strict-overflow)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# --------------------------------------------------------------------------
# IP_VS_DEST_F_OVERLOAD

OverloadEvent = Literal["bind", "unbind", "edit"]
OverloadVariant = Literal["classic", "update_overload"]


def overloaded_after(
    dest: Dest,
    event: OverloadEvent,
    *,
    upper: int | None = None,
    lower: int | None = None,
    variant: OverloadVariant = "classic",
) -> bool:
    """The IP_VS_DEST_F_OVERLOAD flag of ``dest`` after ``event``.

    ``dest.overloaded`` is the flag before the event. For ``"bind"`` and
    ``"unbind"`` (a connection was bound to / unbound from the server,
    ``ip_vs_bind_dest()`` / ``ip_vs_unbind_dest()`` in ip_vs_conn.c) the
    counters of ``dest`` are the ones *after* the increment/decrement and its
    thresholds are the current ones. For ``"edit"`` (``__ip_vs_update_dest()``
    in ip_vs_ctl.c, i.e. ``ipvsadm -a`` or ``-e``) ``dest`` carries the old
    thresholds and ``upper``/``lower`` are the new ones (default: unchanged).
    ``total`` below is ``activeconns + inactconns`` (persistent templates do
    not count).

    ``variant="classic"`` — the code in ip_vs_conn.c / ip_vs_ctl.c since 2.6:

    * bind: set if ``upper != 0 and total >= upper``; never cleared.
    * unbind: if ``lower != 0``: cleared if ``total < lower``; else if
      ``upper != 0``: cleared if ``total * 4 < upper * 3`` (the "3/4 of upper
      when lower is 0" hysteresis, i.e. below ceil(3*upper/4)); else cleared.
      Never set.
    * edit: cleared if the new upper is 0 or greater than the old upper; never
      set (a server already over a newly lowered upper threshold stays
      unflagged until its next bind).

    ``variant="update_overload"`` — Julian Anastasov's patch "ipvs: properly
    update the overload flag on dest edit" (netfilter-devel, July 2026), which
    replaces all three with ``ip_vs_dest_update_overload()``: with ``upper ==
    0`` clear; else set if ``total >= upper``; else keep if ``total >= l``
    where ``l = lower or upper - upper // 4``; else clear. Bind always applies
    it, unbind only when flagged, edit only when a threshold changed. A
    proposal at the time of writing; use it only for a kernel that carries it.
    """
    flagged = dest.overloaded
    if event == "edit":
        new_upper = dest.upper if upper is None else upper
        new_lower = dest.lower if lower is None else lower
        if variant == "classic":
            if new_upper == 0 or new_upper > dest.upper:
                return False
            return flagged
        if new_upper == dest.upper and new_lower == dest.lower:
            return flagged
        return _update_overload(flagged, total_conns(dest), new_upper, new_lower)
    if upper is not None or lower is not None:
        raise ValueError("upper/lower are only for event='edit'")
    total = total_conns(dest)
    if event == "bind":
        if variant == "classic":
            return flagged or (dest.upper != 0 and total >= dest.upper)
        return _update_overload(flagged, total, dest.upper, dest.lower)
    if event == "unbind":
        if variant == "classic":
            if dest.lower != 0:
                return flagged and not total < dest.lower
            if dest.upper != 0:
                return flagged and not total * 4 < dest.upper * 3
            return False
        if not flagged:
            return False
        return _update_overload(flagged, total, dest.upper, dest.lower)
    raise ValueError(f"unknown overload event {event!r}")


def _update_overload(flagged: bool, total: int, upper: int, lower: int) -> bool:
    """``ip_vs_dest_update_overload()`` of the update_overload variant."""
    if upper == 0:
        return False
    if total >= upper:
        return True
    low = lower or (upper - (upper >> 2))
    if total >= low:
        return flagged
    return False


def apply_overload(
    dest: Dest,
    event: OverloadEvent,
    *,
    upper: int | None = None,
    lower: int | None = None,
    variant: OverloadVariant = "classic",
) -> Dest:
    """``dest`` with the flag (and, for ``"edit"``, the thresholds) after ``event``."""
    flag = overloaded_after(dest, event, upper=upper, lower=lower, variant=variant)
    if event == "edit":
        return replace(
            dest,
            overloaded=flag,
            upper=dest.upper if upper is None else upper,
            lower=dest.lower if lower is None else lower,
        )
    return replace(dest, overloaded=flag)


# --------------------------------------------------------------------------
# rr


class RoundRobin(Model):
    """Round robin (net/netfilter/ipvs/ip_vs_rr.c).

    svc->sched_data points at a list entry: the list head at first, then the
    last server picked. A pick walks on from the entry after it to the end of
    the list, wraps to the first entry and ends with the entry itself; the
    first server that is not overloaded and has weight > 0 wins and becomes
    the new position. If none qualifies the result is None and the position
    stays. (While the position is the list head one pass covers every server.)

    Hooks: no ``add_dest`` or ``upd_dest`` (a server added at the head does
    not move the position, so it is reached after the wrap); ``del_dest``
    moves the position off a removed server to the entry before it (the one
    the removed server's successor now links back to), so the next pick
    starts at the removed server's successor. :meth:`update` does this by
    address:port identity.
    """

    name = "rr"
    source = "net/netfilter/ipvs/ip_vs_rr.c"
    deterministic = True

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self.position: tuple[str, int] | None = None  # None: the list head

    def update(self, dests: Sequence[Dest]) -> None:
        """New list; if the current server went away, step back to its nearest survivor."""
        new = list(dests)
        if self.position is not None:
            new_keys = {dest_key(d) for d in new}
            if self.position not in new_keys:
                old_keys = [dest_key(d) for d in self.dests]
                before = old_keys[: old_keys.index(self.position)]
                self.position = next((k for k in reversed(before) if k in new_keys), None)
        self.dests = new

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        keys = [dest_key(d) for d in self.dests]
        n = len(keys)
        if self.position is None:
            order = list(range(n))
        else:
            cur = keys.index(self.position)
            order = [*range(cur + 1, n), *range(cur + 1)]
        for i in order:
            if is_available(self.dests[i]):
                self.position = keys[i]
                return self.dests[i]
        return None


# --------------------------------------------------------------------------
# wrr


def _wrr_gcd(dests: Sequence[Dest]) -> int:
    """``ip_vs_wrr_gcd_weight()``: gcd of the positive weights, 1 if there are none."""
    g = 0
    for d in dests:
        if d.weight > 0:
            g = math.gcd(d.weight, g) if g > 0 else d.weight
    return g or 1


def _wrr_max(dests: Sequence[Dest]) -> int:
    """``ip_vs_wrr_max_weight()``: the largest weight, 0 for none/all zero."""
    return max((d.weight for d in dests if d.weight > 0), default=0)


class WeightedRoundRobin(Model):
    """Weighted round robin (net/netfilter/ipvs/ip_vs_wrr.c, kernels >= 3.x).

    State (struct ip_vs_wrr_mark): ``cl`` the current entry (list head or the
    last server picked), ``di`` the gcd of the positive weights (1 if none),
    ``mw = max weight - (di - 1)`` and ``cw`` the current weight. Init:
    cl = head, cw = mw.

    A pick: if mw == 0 (no server with weight > 0) return None. Otherwise
    walk on from the entry after cl; the first server that is not overloaded
    and has ``weight >= cw`` wins and becomes cl. Each time the walk runs off
    the end of the list: ``cw -= di``; if ``cw <= 0`` then ``cw = mw`` and, if
    this pick already made a pass with cw <= di or started at the head, give
    up (None, cl = head); otherwise note the restart. A pass with ``cw <= di``
    is the last pass; if the pick restarted and did not start at the head,
    that pass stops (None, cl = the start entry) after checking the entry it
    started from. Passes thus run with cw = mw, mw - di, ..., down to 1, so a
    server of weight w is picked w/di times per cycle of sum(w)/di picks,
    interleaved (e.g. weights 4,3,2 give A A B A B C A B C).

    ``ip_vs_wrr_dest_changed()`` is the add_dest, del_dest *and* upd_dest
    hook: cl = head, di and mw recomputed; cw = mw if ``cw > mw`` or
    ``cw == 0``, else if ``di > 1`` ``cw = (cw // di) * di + 1``, else cw is
    kept. So any add, delete or edit (even one that changes nothing) restarts
    the walk at the first server of the current pass. :meth:`update` runs the
    hook once (call it once per kernel operation for exact state); with
    ``notify=None`` it runs it only if the servers, their order, weights or
    thresholds differ (counter/flag-only refreshes do not reach the hook).
    """

    name = "wrr"
    source = "net/netfilter/ipvs/ip_vs_wrr.c"
    deterministic = True

    def __init__(self, dests: Sequence[Dest], *, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(dests, flags=flags)
        self.cl = -1  # index into self.dests; -1: the list head
        self.di = _wrr_gcd(self.dests)
        self.mw = _wrr_max(self.dests) - (self.di - 1)
        self.cw = self.mw

    @staticmethod
    def _config(dests: Sequence[Dest]) -> list[tuple[tuple[str, int], int, int, int]]:
        return [(dest_key(d), d.weight, d.upper, d.lower) for d in dests]

    def update(self, dests: Sequence[Dest], *, notify: bool | None = None) -> None:
        """New list; runs the add/del/upd_dest hook (see the class docstring)."""
        new = list(dests)
        if notify is None:
            notify = self._config(self.dests) != self._config(new)
        self.dests = new
        if notify:
            self.dest_changed()

    def dest_changed(self) -> None:
        """``ip_vs_wrr_dest_changed()`` on the current list."""
        self.cl = -1
        self.di = _wrr_gcd(self.dests)
        self.mw = _wrr_max(self.dests) - (self.di - 1)
        if self.cw > self.mw or self.cw == 0:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    @property
    def state(self) -> tuple[str | None, int, int, int]:
        """(name at cl or None for the head, cw, mw, di)."""
        cl = None if self.cl < 0 else self.dests[self.cl].name
        return (cl, self.cw, self.mw, self.di)

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        if self.mw == 0:
            return None
        dests = self.dests
        last = self.cl
        pos = self.cl
        stop: int | None = None
        last_pass = restarted = False
        while True:
            for i in range(pos + 1, len(dests)):
                d = dests[i]
                if not d.overloaded and d.weight >= self.cw:
                    self.cl = i
                    return d
                if i == stop:
                    self.cl = i
                    return None
            pos = -1  # the walk reached the list head
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last == -1:
                    self.cl = -1
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last != -1:
                stop = last


# --------------------------------------------------------------------------
# lc, wlc, sed, nq


class LeastConnection(Model):
    """Least connection (net/netfilter/ipvs/ip_vs_lc.c).

    Among the servers that are not overloaded and have weight > 0 (the weight
    is otherwise ignored), the one with the smallest
    ``ip_vs_dest_conn_overhead() = active*256 + inactive``; the comparison is
    strict (``doh < loh``), so on a tie the first in list order wins. None if
    no server qualifies.
    """

    name = "lc"
    source = "net/netfilter/ipvs/ip_vs_lc.c"
    deterministic = True

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        least: Dest | None = None
        loh = 0
        for d in self.dests:
            if not is_available(d):
                continue
            doh = conn_overhead(d)
            if least is None or doh < loh:
                least, loh = d, doh
        return least


class _WeightedLeast(Model):
    """wlc and sed: the weighted-least loop over their own overhead."""

    @staticmethod
    def overhead(dest: Dest) -> int:
        raise NotImplementedError

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        return weighted_least(self.dests, self.overhead)


class WeightedLeastConnection(_WeightedLeast):
    """Weighted least connection (net/netfilter/ipvs/ip_vs_wlc.c).

    The first server in list order that is not overloaded and has weight > 0
    is the candidate; each later server that is not overloaded replaces it if
    ``loh * w_dest > doh * w_least`` (64-bit products, strict), where the
    overhead is ``active*256 + inactive``. So the smallest overhead/weight
    wins, the first in list order on a tie; a weight-0 server never wins.
    None if no server qualifies.
    """

    name = "wlc"
    source = "net/netfilter/ipvs/ip_vs_wlc.c"
    deterministic = True

    @staticmethod
    def overhead(dest: Dest) -> int:
        return conn_overhead(dest)


class ShortestExpectedDelay(_WeightedLeast):
    """Shortest expected delay (net/netfilter/ipvs/ip_vs_sed.c).

    As wlc, but the overhead is ``activeconns + 1`` (inactive connections do
    not count): the smallest (active + 1)/weight wins, strict comparison
    ``loh * w_dest > doh * w_least``, first in list order on a tie, weight 0
    and overloaded servers never win. None if no server qualifies.
    """

    name = "sed"
    source = "net/netfilter/ipvs/ip_vs_sed.c"
    deterministic = True

    @staticmethod
    def overhead(dest: Dest) -> int:
        return dest.active + 1


class NeverQueue(Model):
    """Never queue (net/netfilter/ipvs/ip_vs_nq.c).

    Walk the servers in list order, skipping overloaded ones and weight 0.
    The first one with ``activeconns == 0`` is returned at once (whatever its
    weight or inactive connections). Otherwise the one with the smallest
    (active + 1)/weight, compared as in sed (``loh * w_dest > doh * w_least``,
    strict: first in list order on a tie). None if no server qualifies.
    """

    name = "nq"
    source = "net/netfilter/ipvs/ip_vs_nq.c"
    deterministic = True

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        least: Dest | None = None
        loh = 0
        for d in self.dests:
            if not is_available(d):
                continue
            doh = d.active + 1
            if d.active == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


# --------------------------------------------------------------------------
# fo, ovf


class WeightedFailover(Model):
    """Weighted failover (net/netfilter/ipvs/ip_vs_fo.c).

    The server with the highest weight among those not overloaded; the
    comparison ``weight > hw`` starts from hw = 0 (so weight 0 never wins)
    and is strict, so on equal weights the first in list order wins.
    Connection counters are not looked at. None if no server qualifies.
    """

    name = "fo"
    source = "net/netfilter/ipvs/ip_vs_fo.c"
    deterministic = True

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        best: Dest | None = None
        hw = 0
        for d in self.dests:
            if not d.overloaded and d.weight > hw:
                best, hw = d, d.weight
        return best


class Overflow(Model):
    """Overflow connection (net/netfilter/ipvs/ip_vs_ovf.c).

    Servers that are overloaded, have weight 0, or have ``activeconns >
    weight`` are skipped (a server with exactly ``weight`` active connections
    still qualifies, so it fills up to weight + 1). Of the rest, the highest
    weight wins; strict ``w > hw`` so the first in list order wins on equal
    weights. Inactive connections do not count. None if no server qualifies.
    """

    name = "ovf"
    source = "net/netfilter/ipvs/ip_vs_ovf.c"
    deterministic = True

    def schedule(self, flow: Flow | None = None) -> Dest | None:
        best: Dest | None = None
        hw = 0
        for d in self.dests:
            w = d.weight
            if d.overloaded or d.active > w or w == 0:
                continue
            if best is None or w > hw:
                best, hw = d, w
        return best


# --------------------------------------------------------------------------
# twos


class PowerOfTwoChoices(Model):
    """Power of two choices (net/netfilter/ipvs/ip_vs_twos.c, added around Linux 6.2).

    Let the available servers be those not overloaded with weight > 0 (None
    if there are none) and T the sum of their weights. Two numbers r1, r2 are
    drawn independently and uniformly from [0, T] (``get_random_u32_below(T +
    1)``; the first version used ``prandom_u32() % (T + 1)``, whose bias is
    below 2**-32 per value). Each r selects, walking the available servers in
    list order and subtracting their weights, the first server where r drops
    to <= 0: the first server thus covers r in [0, w1] (w1 + 1 values), each
    later one w values. With choice1/choice2 and their weights w1/w2 and
    overheads ``active*256 + inactive`` o1/o2, the result is choice2 if
    ``w2 * o1 > w1 * o2`` (32-bit int products) else choice1: ties go to
    choice1, the draw of r1.

    :meth:`distribution` gives the exact probability of each server;
    :meth:`schedule` draws with an injectable ``random_below(n)`` returning an
    integer in [0, n) (called for r1, then r2).
    """

    name = "twos"
    source = "net/netfilter/ipvs/ip_vs_twos.c"
    deterministic = False

    def __init__(
        self,
        dests: Sequence[Dest],
        *,
        flags: frozenset[str] = frozenset(),
        random_below: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__(dests, flags=flags)
        self.random_below: Callable[[int], int] = random_below or random.Random().randrange

    def _available(self) -> list[Dest]:
        return [d for d in self.dests if is_available(d)]

    @staticmethod
    def _pick(avail: Sequence[Dest], r: int) -> Dest:
        for d in avail:
            r -= d.weight
            if r <= 0:
                return d
        raise AssertionError("r beyond the total weight")  # pragma: no cover

    @staticmethod
    def _choose(c1: Dest, c2: Dest) -> Dest:
        o1, o2 = conn_overhead(c1), conn_overhead(c2)
        return c2 if _s32(c2.weight * o1) > _s32(c1.weight * o2) else c1

    def schedule(
        self, flow: Flow | None = None, *, random_below: Callable[[int], int] | None = None
    ) -> Dest | None:
        avail = self._available()
        if not avail:
            return None
        n = sum(d.weight for d in avail) + 1
        draw = random_below or self.random_below
        r1, r2 = draw(n), draw(n)
        if not (0 <= r1 < n and 0 <= r2 < n):
            raise ValueError(f"random_below({n}) returned {r1}, {r2}")
        return self._choose(self._pick(avail, r1), self._pick(avail, r2))

    def distribution_exact(self) -> dict[str, Fraction]:
        """Probability of each server (by name, every server listed) as fractions."""
        result = {d.name: Fraction(0) for d in self.dests}
        avail = self._available()
        if not avail:
            return result
        n = sum(d.weight for d in avail) + 1
        first = [Fraction(d.weight + (1 if i == 0 else 0), n) for i, d in enumerate(avail)]
        for c1, p1 in zip(avail, first, strict=True):
            for c2, p2 in zip(avail, first, strict=True):
                result[self._choose(c1, c2).name] += p1 * p2
        return result

    def distribution(self) -> dict[str, float]:
        """Probability of each server (by name, every server listed); empty sum if none."""
        return {k: float(v) for k, v in self.distribution_exact().items()}


MODELS: dict[str, type[Model]] = {
    m.name: m
    for m in (
        RoundRobin,
        WeightedRoundRobin,
        LeastConnection,
        WeightedLeastConnection,
        ShortestExpectedDelay,
        NeverQueue,
        WeightedFailover,
        Overflow,
        PowerOfTwoChoices,
    )
}
