"""Pure statistics shared by the load tools and the bench: no sockets, no root."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN if empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(ms: Sequence[float]) -> dict[str, float | int]:
    """p50, p99, max and mean of connect times in milliseconds."""
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(max(ms), 3),
        "mean": round(statistics.fmean(ms), 3),
    }


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max and relative spread ((max - min) / median) of repetitions."""
    if not values:
        return {"n": 0}
    med = statistics.median(values)
    return {
        "n": len(values),
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "rel_spread": round((max(values) - min(values)) / med, 4) if med else math.inf,
    }


def drifted(values: Sequence[float], *, tolerance: float = 0.10) -> bool:
    """True if any repetition of a control is more than ``tolerance`` off its median."""
    if not values:
        return False
    med = statistics.median(values)
    return any(abs(v - med) > tolerance * med for v in values)


def alternated(items: Sequence[str], repetition: int) -> list[str]:
    """Order of ``items`` in one repetition: forward on even, reversed on odd ones.

    Alternating cancels a slow drift of the machine (another guest, thermal)
    that would otherwise favour whatever always runs first.
    """
    return list(items) if repetition % 2 == 0 else list(reversed(items))


def merge_ramps(ramps: Iterable[Sequence[Sequence[float]]], step: float = 0.5) -> list[list[float]]:
    """Sum several ``[[t, open], ...]`` series (same clock) on a common time grid.

    Each series holds its last value between samples and before its first
    sample counts zero.
    """
    ramps = [sorted(r) for r in ramps if r]
    if not ramps:
        return []
    end = max(r[-1][0] for r in ramps)
    out = []
    t = 0.0
    while True:
        total = 0.0
        for r in ramps:
            last = 0.0
            for ts, n in r:
                if ts > t + 1e-9:
                    break
                last = n
            total += last
        out.append([round(t, 3), total])
        if t >= end:
            return out
        t = min(t + step, end)


def merge_results(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine holder results of several workers or processes into one.

    Counts add up; connect-time percentiles come from the pooled samples;
    the rate is all connections over the longest time to a last successful
    connect (they ran in parallel): a connect that times out is counted as
    a failure, not as 10 s of idle waiting folded into the rate.
    """
    if not parts:
        raise ValueError("nothing to merge")
    samples = [ms for p in parts for ms in p.get("samples_ms", [])]
    failures: Counter[str] = Counter()
    for p in parts:
        failures.update(p.get("failures", {}))
    summed = ("attempted", "connected", "held", "resets", "closed_by_peer", "established_at_end")
    out: dict[str, Any] = {k: sum(int(p.get(k, 0)) for p in parts) for k in summed}
    ramp_s = max(float(p.get("ramp_s", 0.0)) for p in parts)
    active_s = max(float(p.get("active_s", p.get("ramp_s", 0.0))) for p in parts)
    out |= {
        "failures": dict(failures),
        "failed": sum(failures.values()),
        "ramp_s": round(ramp_s, 3),
        "active_s": round(active_s, 3),
        "rate_per_s": round(out["connected"] / active_s, 1) if active_s > 0 else 0.0,
        "connect_ms": latency_summary(samples),
        "hold_s": max(float(p.get("hold_s", 0.0)) for p in parts),
        "ramp": merge_ramps(p.get("ramp", []) for p in parts),
        "samples_ms": samples,
    }
    return out


def below_saturation(p50_ms: dict[int, float], *, queueing: float = 1.5) -> int:
    """The highest offered concurrency that still does not queue: its median connect
    time (p50) within ``queueing`` times that of the lowest concurrency.

    A closed-loop client at concurrency c achieves c / latency; while nothing waits,
    latency stays flat and the rate grows with c. Once the guest's CPUs (client,
    director and servers share them) are the limit, latency grows with c instead,
    and a VIP/direct ratio taken there compares two saturated systems.
    """
    if not p50_ms:
        raise ValueError("no concurrency measured")
    levels = sorted(p50_ms)
    base = p50_ms[levels[0]]
    calm = [c for c in levels if p50_ms[c] <= queueing * base]
    return calm[-1]


def increments(levels: Sequence[int]) -> list[tuple[int, int]]:
    """``(held_before, level)`` for each level of a scale curve (ascending, distinct,
    from zero): what each step opens on top of what the steps before it hold."""
    if not levels or any(b <= a for a, b in itertools.pairwise(levels)):
        raise ValueError(f"scale levels must rise strictly: {list(levels)}")
    if levels[0] < 0:
        raise ValueError("scale levels must be >= 0")
    return list(zip([0, *levels[:-1]], levels, strict=True))
