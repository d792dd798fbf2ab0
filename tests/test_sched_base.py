"""What several scheduler models share (testbed/sched/_base.py), each tested once here."""

from __future__ import annotations

from dataclasses import replace

from testbed.sched import (
    Dest,
    conn_overhead,
    dest_key,
    is_available,
    list_order,
    total_conns,
    weighted_least,
)


def d(name: str, weight: int = 1, **kw: object) -> Dest:
    return Dest(name=name, addr=f"10.1.0.{ord(name[0])}", weight=weight, **kw)  # type: ignore[arg-type]


def test_list_order_newest_first() -> None:
    """list_add_rcu() links a new real server at the head (ip_vs_ctl.c)."""
    a, b, c = d("A"), d("B"), d("C")
    assert list_order([a, b, c]) == [c, b, a]


def test_counters() -> None:
    x = d("A", active=2, inactive=7)
    assert conn_overhead(x) == 2 * 256 + 7
    assert total_conns(x) == 9
    assert dest_key(x) == ("10.1.0.65", 80)


def test_availability_needs_weight_and_no_overload_flag() -> None:
    assert is_available(d("A"))
    assert not is_available(d("A", weight=0))
    assert not is_available(d("A", overloaded=True))


def test_weighted_least_formula_tie_and_flags() -> None:
    # overhead = active * 256 + inactive, compared per weight by cross-multiplication
    a, b, c = d("A", active=2), d("B", weight=2, active=3), d("C", active=1, inactive=300)
    assert weighted_least([a, b, c]) is b  # 512/1, 768/2 = 384, 556/1
    tie = [d("A"), d("B")]
    assert weighted_least(tie) is tie[0]  # strict: the first in list order wins a tie
    assert weighted_least([d("A", weight=0), d("B", weight=0)]) is None
    flagged = [d("A", overloaded=True), d("B")]
    assert weighted_least(flagged) is flagged[1]
    # a weight-0 server after the candidate never wins, whatever its overhead
    assert weighted_least([d("A", active=9), d("B", weight=0)]).name == "A"  # type: ignore[union-attr]


def test_weighted_least_takes_the_models_overhead() -> None:
    """sed counts active + 1 and ignores inactive connections."""
    a, b = d("A", inactive=1000), replace(d("B"), active=1)
    assert weighted_least([a, b], lambda x: x.active + 1) is a
    assert weighted_least([a, b]) is b
