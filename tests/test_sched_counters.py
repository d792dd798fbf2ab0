"""Reference models rr, wrr, lc, wlc, sed, nq, fo, ovf, twos (testbed/sched/_counters.py).

Expected choices and sequences are derived by hand from the kernel sources
(net/netfilter/ipvs/ip_vs_*.c); the derivation is in the comments.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest

from testbed.sched import Dest, Flow
from testbed.sched._counters import (
    MODELS,
    LeastConnection,
    NeverQueue,
    Overflow,
    PowerOfTwoChoices,
    RoundRobin,
    ShortestExpectedDelay,
    WeightedFailover,
    WeightedLeastConnection,
    WeightedRoundRobin,
    apply_overload,
    overloaded_after,
)

FLOW = Flow(saddr="10.0.0.1", sport=40000, daddr="10.0.0.100", dport=80)


def d(name: str, weight: int = 1, **kw: Any) -> Dest:
    """A server whose address is derived from its one-letter name."""
    return Dest(name=name, addr=f"10.1.0.{ord(name[0])}", weight=weight, **kw)


def picks(model: RoundRobin | WeightedRoundRobin, n: int) -> str:
    out = []
    for _ in range(n):
        dest = model.schedule(FLOW)
        out.append("-" if dest is None else dest.name)
    return "".join(out)


def pick(model_cls: type, *dests: Dest) -> str | None:
    dest = model_cls(list(dests)).schedule(FLOW)
    return None if dest is None else dest.name


# ---------------------------------------------------------------- registry


def test_registry_names_sources_and_determinism() -> None:
    assert sorted(MODELS) == sorted(["rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos"])
    for name, cls in MODELS.items():
        assert cls.name == name
        assert cls.source == f"net/netfilter/ipvs/ip_vs_{name}.c"
        assert cls.deterministic is (name != "twos")
        assert cls.__doc__ and cls.source in cls.__doc__


# ---------------------------------------------------------------- overload flag


def test_bind_sets_at_upper_threshold() -> None:
    # ip_vs_bind_dest: set if u_threshold && totalconns >= u_threshold (after the inc)
    assert not overloaded_after(d("A", upper=4, active=2, inactive=1), "bind")
    assert overloaded_after(d("A", upper=4, active=2, inactive=2), "bind")
    assert not overloaded_after(d("A", upper=0, active=100), "bind")
    # bind never clears
    assert overloaded_after(d("A", upper=4, active=1, overloaded=True), "bind")


@pytest.mark.parametrize(
    ("upper", "total", "still"),
    [
        # lower == 0: cleared when total*4 < upper*3, i.e. below ceil(3*upper/4)
        (4, 3, True),
        (4, 2, False),
        (2, 1, False),  # 4 < 6: ceil(1.5) = 2, unlike floor(3*2/4) = 1
        (10, 8, True),
        (10, 7, False),
        (3, 3, True),
        (3, 2, False),
    ],
)
def test_unbind_three_quarters_hysteresis(upper: int, total: int, still: bool) -> None:
    dest = d("A", upper=upper, active=total, overloaded=True)
    assert overloaded_after(dest, "unbind") is still


def test_unbind_with_lower_threshold_and_without_thresholds() -> None:
    flagged = d("A", upper=10, lower=5, overloaded=True)
    assert overloaded_after(replace(flagged, inactive=5), "unbind")
    assert not overloaded_after(replace(flagged, inactive=4), "unbind")
    # lower wins over the 3/4 rule: 7*4 < 30 would clear, but 7 >= lower 5 keeps
    assert overloaded_after(replace(flagged, active=7), "unbind")
    # no thresholds at all: cleared on any unbind
    assert not overloaded_after(d("A", active=50, overloaded=True), "unbind")
    # unbind never sets
    assert not overloaded_after(d("A", upper=2, active=5), "unbind")


def test_edit_clears_only_on_raise_or_zero() -> None:
    flagged = d("A", upper=4, active=4, overloaded=True)
    assert not overloaded_after(flagged, "edit", upper=5)  # raised
    assert not overloaded_after(flagged, "edit", upper=0)  # removed
    assert overloaded_after(flagged, "edit", upper=4)  # same
    assert overloaded_after(flagged, "edit", upper=3)  # lowered: kept
    # lowering below the current count does not set the flag (only a bind does)
    assert not overloaded_after(d("A", upper=10, active=8), "edit", upper=2)
    edited = apply_overload(flagged, "edit", upper=8, lower=2)
    assert (edited.upper, edited.lower, edited.overloaded) == (8, 2, False)
    with pytest.raises(ValueError):
        overloaded_after(flagged, "bind", upper=3)


def test_update_overload_variant() -> None:
    v = "update_overload"
    # default lower = u - u//4: u=10 -> 8, u=2 -> 2
    assert overloaded_after(d("A", upper=10, active=8, overloaded=True), "unbind", variant=v)
    assert not overloaded_after(d("A", upper=10, active=7, overloaded=True), "unbind", variant=v)
    assert not overloaded_after(d("A", upper=2, active=1, overloaded=True), "unbind", variant=v)
    # an edit that changes a threshold re-evaluates (can set the flag)
    assert overloaded_after(d("A", upper=10, active=8), "edit", upper=2, variant=v)
    assert not overloaded_after(d("A", upper=10, active=8), "edit", upper=10, variant=v)


def test_overload_trace_with_rr() -> None:
    # A has u_threshold 3: flagged at the 3rd bind; the unbind to 2 clears (2*4 < 3*3)
    a = d("A", upper=3)
    trace = []
    for delta in (1, 1, 1, -1, -1):
        a = replace(a, active=a.active + delta)
        a = apply_overload(a, "bind" if delta > 0 else "unbind")
        trace.append((a.active, a.overloaded))
    assert trace == [(1, False), (2, False), (3, True), (2, False), (1, False)]
    # u=4: 3 after an unbind keeps the flag (12 < 12 is false)
    b = d("B", upper=4, active=4, overloaded=True)
    b = apply_overload(replace(b, active=3), "unbind")
    assert b.overloaded
    rr = RoundRobin([b, d("C")])
    assert picks(rr, 3) == "CCC"


# ---------------------------------------------------------------- rr


def test_rr_cycles_in_list_order() -> None:
    assert picks(RoundRobin([d("A"), d("B"), d("C")]), 7) == "ABCABCA"


def test_rr_skips_weight_zero_and_overloaded() -> None:
    rr = RoundRobin([d("A"), d("B", 0), d("C", overloaded=True), d("D", 7)])
    assert picks(rr, 5) == "ADADA"


def test_rr_none_keeps_position() -> None:
    assert RoundRobin([]).schedule(FLOW) is None
    a, b, c = d("A"), d("B"), d("C")
    rr = RoundRobin([a, b, c])
    assert picks(rr, 2) == "AB"
    rr.update([replace(a, weight=0), replace(b, overloaded=True), replace(c, weight=0)])
    assert picks(rr, 2) == "--"
    rr.update([a, b, c])
    assert picks(rr, 2) == "CA"  # still after B


def test_rr_position_survives_flag_changes() -> None:
    a, b, c = d("A"), d("B"), d("C")
    rr = RoundRobin([a, b, c])
    assert picks(rr, 1) == "A"
    rr.update([a, replace(b, overloaded=True), c])
    assert picks(rr, 2) == "CA"
    rr.update([a, b, c])
    assert picks(rr, 2) == "BC"


def test_rr_only_current_available_is_reached_last() -> None:
    a, b, c = d("A"), d("B"), d("C")
    rr = RoundRobin([a, b, c])
    assert picks(rr, 2) == "AB"
    rr.update([replace(a, weight=0), b, replace(c, weight=0)])
    assert picks(rr, 2) == "BB"


def test_rr_added_server_goes_to_head() -> None:
    a, b, c, new = d("A"), d("B"), d("C"), d("D")
    rr = RoundRobin([a, b, c])
    assert picks(rr, 2) == "AB"
    rr.update([new, a, b, c])  # list_add_rcu: at the head, no add_dest hook
    assert picks(rr, 5) == "CDABC"


def test_rr_deleted_current_steps_back() -> None:
    a, b, c = d("A"), d("B"), d("C")
    rr = RoundRobin([a, b, c])
    assert picks(rr, 2) == "AB"
    rr.update([a, c])  # ip_vs_rr_del_dest: position -> A, so C is next
    assert picks(rr, 3) == "CAC"
    rr2 = RoundRobin([a, b, c])
    assert picks(rr2, 1) == "A"
    rr2.update([b, c])  # position -> list head
    assert picks(rr2, 3) == "BCB"


# ---------------------------------------------------------------- wrr


def test_wrr_4_3_2_interleaving() -> None:
    # di=1, mw=4, cw=4: pass cw=4: A | cw=3: A B | cw=2: A B C | cw=1: A B C
    wrr = WeightedRoundRobin([d("A", 4), d("B", 3), d("C", 2)])
    assert wrr.state == (None, 4, 4, 1)
    assert picks(wrr, 18) == "AABABCABC" * 2


def test_wrr_gcd_above_one() -> None:
    # weights 4,2,6: di=2, mw=6-1=5; passes cw=5: C | cw=3: A C | cw=1: A B C
    wrr = WeightedRoundRobin([d("A", 4), d("B", 2), d("C", 6)])
    assert wrr.state == (None, 5, 5, 2)
    assert picks(wrr, 12) == "CACABC" * 2


def test_wrr_weight_zero_and_none() -> None:
    # 2,0,1: passes cw=2: A | cw=1: A C; B never
    assert picks(WeightedRoundRobin([d("A", 2), d("B", 0), d("C", 1)]), 6) == "AACAAC"
    assert WeightedRoundRobin([]).schedule(FLOW) is None
    wrr = WeightedRoundRobin([d("A", 0), d("B", 0)])
    assert wrr.state == (None, 0, 0, 1)
    assert picks(wrr, 2) == "--"


def test_wrr_skips_overloaded() -> None:
    # A overloaded: cw=4: - | cw=3: B | cw=2: B C | cw=1: B C
    wrr = WeightedRoundRobin([d("A", 4, overloaded=True), d("B", 3), d("C", 2)])
    assert picks(wrr, 10) == "BBCBC" * 2


def test_wrr_all_overloaded_then_recovers() -> None:
    a, b = d("A", 2), d("B", 1)
    wrr = WeightedRoundRobin([a, b])
    assert picks(wrr, 2) == "AA"  # cw=2: A | cw=1: A ...
    wrr.update([replace(a, overloaded=True), replace(b, overloaded=True)])
    assert picks(wrr, 1) == "-"
    wrr.update([a, b])
    # the failed pick left cl on A with cw=1 (stopped at the start entry): B next
    assert wrr.state == ("A", 1, 2, 1)
    assert picks(wrr, 4) == "BAAB"


def test_wrr_weight_raise_mid_sequence() -> None:
    a, b, c = d("A", 4), d("B", 3), d("C", 2)
    wrr = WeightedRoundRobin([a, b, c])
    assert picks(wrr, 4) == "AABA"  # now cl=A, cw=2
    wrr.update([a, replace(b, weight=6), c])
    # dest_changed: cl=head, di=gcd(4,6,2)=2, mw=6-1=5, cw=(2//2)*2+1=3
    assert wrr.state == (None, 3, 5, 2)
    # cw=3: A B | cw=1: A B C | cw=5: B | cw=3: A B | cw=1: A B C | ...
    assert picks(wrr, 17) == "AB" + "ABC" + "BABABC" * 2


def test_wrr_weight_lower_mid_sequence() -> None:
    a, b, c = d("A", 4), d("B", 3), d("C", 2)
    wrr = WeightedRoundRobin([a, b, c])
    assert picks(wrr, 1) == "A"  # cl=A, cw=4
    wrr.update([replace(a, weight=1), b, c])
    # mw=3 < cw=4: cw=mw=3. cw=3: B | cw=2: B C | cw=1: A B C
    assert wrr.state == (None, 3, 3, 1)
    assert picks(wrr, 12) == "BBCABC" * 2


def test_wrr_added_server_and_hook() -> None:
    a, b, c = d("A", 4), d("B", 3), d("C", 2)
    wrr = WeightedRoundRobin([a, b, c])
    assert picks(wrr, 4) == "AABA"  # cl=A, cw=2
    wrr.update([d("D", 1), a, b, c])  # add at head; di=1 so cw stays 2, cl=head
    assert wrr.state == (None, 2, 4, 1)
    # cw=2: A B C | cw=1: D A B C | cw=4: A | cw=3: A B | ...
    assert picks(wrr, 13) == "ABC" + "DABC" + "A" + "AB" + "ABC"


def test_wrr_counter_refresh_does_not_run_the_hook() -> None:
    a, b, c = d("A", 4), d("B", 3), d("C", 2)
    wrr = WeightedRoundRobin([a, b, c])
    assert picks(wrr, 5) == "AABAB"  # cl=B, cw=2
    wrr.update([replace(a, active=9), b, c])  # counters only: no upd_dest
    assert picks(wrr, 1) == "C"
    wrr2 = WeightedRoundRobin([a, b, c])
    assert picks(wrr2, 5) == "AABAB"
    wrr2.update([a, b, c], notify=True)  # an `ipvsadm -e` with no change: cl = head
    assert picks(wrr2, 1) == "A"


# ---------------------------------------------------------------- lc


def test_lc_overhead_and_tie() -> None:
    # 1 active (256) vs 255 inactive: B; vs 256 inactive: tie, first wins
    assert pick(LeastConnection, d("A", active=1), d("B", inactive=255)) == "B"
    assert pick(LeastConnection, d("A", active=1), d("B", inactive=256)) == "A"
    assert pick(LeastConnection, d("A", inactive=3), d("B", inactive=3)) == "A"


def test_lc_ignores_weight_but_skips_zero_and_overloaded() -> None:
    assert pick(LeastConnection, d("A", 1, inactive=10), d("B", 100, inactive=11)) == "A"
    dests = (d("A", 0), d("B", overloaded=True), d("C", active=5), d("D", active=6))
    assert pick(LeastConnection, *dests) == "C"
    assert pick(LeastConnection, d("A", 0), d("B", overloaded=True)) is None
    assert pick(LeastConnection) is None


# ---------------------------------------------------------------- wlc


def test_wlc_weighted_comparison_and_tie() -> None:
    # A: 256/1, B: 512/2 -> tie (256*2 > 512*1 false): A; B weight 3 -> B
    assert pick(WeightedLeastConnection, d("A", 1, active=1), d("B", 2, active=2)) == "A"
    assert pick(WeightedLeastConnection, d("A", 1, active=1), d("B", 3, active=2)) == "B"
    # inactive connections count (overhead 10 vs 9)
    assert pick(WeightedLeastConnection, d("A", inactive=10), d("B", inactive=9)) == "B"
    # zero overhead first: nothing beats loh = 0
    assert pick(WeightedLeastConnection, d("A", 1), d("B", 100)) == "A"


def test_wlc_weight_zero_and_overloaded() -> None:
    # first stage skips weight 0; later weight 0 can never win
    dests = (d("A", 0), d("B", active=3), d("C", active=3))
    assert pick(WeightedLeastConnection, *dests) == "B"
    assert pick(WeightedLeastConnection, d("A", 1, active=9), d("B", 0)) == "A"
    assert pick(WeightedLeastConnection, d("A", overloaded=True), d("B", active=50)) == "B"
    assert pick(WeightedLeastConnection, d("A", 0), d("B", overloaded=True)) is None


# ---------------------------------------------------------------- sed


def test_sed_uses_active_plus_one() -> None:
    # A: (0+1)/1 = 1, B: (1+1)/3 = 0.67 -> B (wlc would say A: overhead 0)
    a, b = d("A", 1), d("B", 3, active=1)
    assert pick(ShortestExpectedDelay, a, b) == "B"
    assert pick(WeightedLeastConnection, a, b) == "A"
    # inactive connections are ignored: tie 1 vs 1 -> first
    assert pick(ShortestExpectedDelay, d("A", inactive=1000), d("B")) == "A"
    # A: 2/2, B: 1/1 -> tie -> A
    assert pick(ShortestExpectedDelay, d("A", 2, active=1), d("B", 1)) == "A"


def test_sed_weight_zero_overloaded_none() -> None:
    assert pick(ShortestExpectedDelay, d("A", 0), d("B", active=7)) == "B"
    assert pick(ShortestExpectedDelay, d("A", active=7), d("B", 0)) == "A"
    assert pick(ShortestExpectedDelay, d("A", overloaded=True), d("B", active=7)) == "B"
    assert pick(ShortestExpectedDelay) is None


# ---------------------------------------------------------------- nq


def test_nq_idle_server_first() -> None:
    # B idle (active 0, inactive ignored) beats A's 2/10 expected delay
    a, b = d("A", 10, active=1), d("B", 1, inactive=50)
    assert pick(NeverQueue, a, b) == "B"
    assert pick(ShortestExpectedDelay, a, b) == "A"
    # first idle in list order, regardless of weight
    assert pick(NeverQueue, d("A", active=3), d("B", 1), d("C", 5)) == "B"


def test_nq_falls_back_to_sed() -> None:
    # idle A (weight 0) and idle B (overloaded) are skipped; C 3/1 vs D 4/2 -> D
    dests = (d("A", 0), d("B", overloaded=True), d("C", 1, active=2), d("D", 2, active=3))
    assert pick(NeverQueue, *dests) == "D"
    # tie 2/1 vs 4/2 -> first
    assert pick(NeverQueue, d("A", 1, active=1), d("B", 2, active=3)) == "A"
    assert pick(NeverQueue, d("A", 0), d("B", overloaded=True)) is None


# ---------------------------------------------------------------- fo


def test_fo_highest_weight_first_on_tie() -> None:
    assert pick(WeightedFailover, d("A", 1), d("B", 3, active=99), d("C", 3)) == "B"
    assert pick(WeightedFailover, d("A", 1), d("B", 3, overloaded=True), d("C", 3)) == "C"
    assert pick(WeightedFailover, d("A", 0), d("B", 0)) is None
    assert pick(WeightedFailover) is None


# ---------------------------------------------------------------- ovf


def test_ovf_overflows_past_weight() -> None:
    # B: active 5 == weight 5 still qualifies; C: 6 > 5 skipped
    dests = (d("A", 2, active=2), d("C", 5, active=6), d("B", 5, active=5))
    assert pick(Overflow, *dests) == "B"
    assert pick(Overflow, d("A", 2, active=3), d("B", 1)) == "B"
    # equal weights: first; inactive ignored
    assert pick(Overflow, d("A", 3, inactive=100), d("B", 3)) == "A"


def test_ovf_fills_in_order() -> None:
    # simulate: each pick adds an active connection
    dests = [d("A", 2), d("B", 1)]
    seq = []
    for _ in range(6):
        chosen = Overflow(dests).schedule(FLOW)
        seq.append("-" if chosen is None else chosen.name)
        dests = [replace(x, active=x.active + 1) if x == chosen else x for x in dests]
    assert "".join(seq) == "AAABB-"


def test_ovf_weight_zero_overloaded_none() -> None:
    assert pick(Overflow, d("A", 0), d("B", 1, overloaded=True)) is None
    assert pick(Overflow, d("A", 0), d("B", 1)) == "B"


# ---------------------------------------------------------------- twos


def test_twos_distribution_first_server_gets_extra_slot() -> None:
    # T=2, r in {0,1,2}: A gets {0,1}, B {2}; equal overheads -> choice1 kept
    model = PowerOfTwoChoices([d("A"), d("B")])
    assert model.distribution_exact() == {"A": Fraction(2, 3), "B": Fraction(1, 3)}


def test_twos_distribution_least_loaded_of_two() -> None:
    # B has 1 active: B only when both draws are B: (1/3)^2
    model = PowerOfTwoChoices([d("A"), d("B", active=1)])
    assert model.distribution_exact() == {"A": Fraction(8, 9), "B": Fraction(1, 9)}
    # A w2 overhead 256, B w1 overhead 0: T=3, P(r->A)=3/4; A only for (A, A)
    model = PowerOfTwoChoices([d("A", 2, active=1), d("B", 1), d("C", 5, overloaded=True)])
    dist = model.distribution()
    assert dist == pytest.approx({"A": 9 / 16, "B": 7 / 16, "C": 0.0})


def test_twos_weighted_overhead_comparison() -> None:
    # A w1 o=256, B w2 o=512: 2*256 > 1*512 false -> tie keeps choice1
    model = PowerOfTwoChoices([d("A", 1, active=1), d("B", 2, active=2)])
    # r in 0..3: A {0,1}, B {2,3}; no swaps, so the draw of r1 decides
    assert model.distribution_exact() == {"A": Fraction(1, 2), "B": Fraction(1, 2)}


def test_twos_schedule_with_injected_draws() -> None:
    calls: list[int] = []

    def draws(values: list[int]) -> Callable[[int], int]:
        it = iter(values)

        def below(n: int) -> int:
            calls.append(n)
            return next(it)

        return below

    a, b = d("A", 2, active=1), d("B", 1)
    model = PowerOfTwoChoices([a, b])
    # r1=2 -> A (2-2=0 <= 0), r2=3 -> B; B less loaded -> B
    assert model.schedule(FLOW, random_below=draws([2, 3])) == b
    assert calls == [4, 4]
    # r1=3 -> B, r2=0 -> A: A is not less loaded -> B
    assert model.schedule(FLOW, random_below=draws([3, 0])) == b
    # r1=r2=0 -> A
    assert model.schedule(FLOW, random_below=draws([0, 0])) == a
    idle = PowerOfTwoChoices([replace(a, active=0), b])
    assert idle.schedule(FLOW, random_below=draws([3, 0])) == b  # tie keeps choice1
    with pytest.raises(ValueError):
        model.schedule(FLOW, random_below=draws([4, 0]))


def test_twos_none_and_sampling_matches_distribution() -> None:
    empty = PowerOfTwoChoices([d("A", 0), d("B", overloaded=True)])
    assert empty.schedule(FLOW) is None
    assert empty.distribution() == {"A": 0.0, "B": 0.0}
    rng = random.Random(1)
    model = PowerOfTwoChoices(
        [d("A", 3, active=2), d("B", 1), d("C", 2, active=1, inactive=4)],
        random_below=rng.randrange,
    )
    n = 20000
    counts = dict.fromkeys("ABC", 0)
    for _ in range(n):
        chosen = model.schedule(FLOW)
        assert chosen is not None
        counts[chosen.name] += 1
    dist = model.distribution()
    assert sum(dist.values()) == pytest.approx(1.0)
    for name, p in dist.items():
        assert counts[name] / n == pytest.approx(p, abs=0.015)
