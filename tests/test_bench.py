"""The bench's arithmetic and its report, from synthetic figures (no root, no guest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.stats import below_saturation, increments, spread
from testbed import TestbedError
from testbed.bench import Bench, BenchOptions, table_size
from testbed.report import bench_kernels, bench_summary, render


def _runs(direct: list[float], **modes: list[float]) -> dict[str, list[dict[str, float]]]:
    out = {"direct": [{"mbit_s": v} for v in direct]}
    out |= {m: [{"mbit_s": v} for v in vals] for m, vals in modes.items()}
    return out


def test_ratios_pair_each_repetition_with_its_own_control() -> None:
    # the control halves in the 2nd repetition, and so does NAT: its ratio stays 0.8
    r = Bench._ratios(_runs([100, 50, 100], nat=[80, 40, 80]), "mbit_s")
    assert r["ratios"]["nat"]["values"] == [0.8, 0.8, 0.8]
    assert r["ratios"]["nat"]["median"] == 0.8
    assert r["figures"]["direct"]["median"] == 100
    assert r["control_drift"] is True


def test_steady_control_is_not_flagged() -> None:
    r = Bench._ratios(_runs([100, 104, 97], dr=[95, 99, 90]), "mbit_s")
    assert r["control_drift"] is False
    assert r["ratios"]["dr"]["min"] == pytest.approx(90 / 97, abs=1e-4)


@pytest.mark.parametrize(
    "changes",
    [
        {"repetitions": 0},
        {"scale_levels": (0, 5000, 5000)},
        {"scale_levels": (0, 20_000, 10_000)},
        {"scale_levels": (-1, 10)},
        {"sweep": ()},
        {"sweep": (0, 4)},
        {"conn_tab_bits": 30},
        {"hold": -1},
        {"modes": ("nat", "snat")},
        {"scale_modes": ("direct", "snat")},
        {"failover_fault": "unplug"},
        {"connect_tool": "wrk"},
    ],
)
def test_bad_options_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(TestbedError):
        BenchOptions(**changes)  # type: ignore[arg-type]


def test_the_direct_control_is_a_scale_path() -> None:
    assert BenchOptions().scale_modes[0] == "direct"
    assert BenchOptions(scale_modes=("direct", "dr")).scale_modes == ("direct", "dr")


def test_the_ratio_is_taken_where_the_direct_path_does_not_queue_yet() -> None:
    # p50 flat up to 4 in flight, then growing with the offered load: saturated
    assert below_saturation({1: 2.0, 4: 2.6, 16: 7.9, 64: 31.0}) == 4
    assert below_saturation({1: 2.0, 4: 3.1}) == 1  # queueing from the start
    assert below_saturation({8: 1.0}) == 8
    with pytest.raises(ValueError):
        below_saturation({})


def test_each_scale_step_opens_what_the_steps_before_do_not_hold() -> None:
    assert increments((0, 10, 25)) == [(0, 0), (0, 10), (10, 25)]
    with pytest.raises(ValueError):
        increments((10, 10))


class _Spec:
    clients = (type("C", (), {"name": "c1"})(), type("C", (), {"name": "c2"})())


class _Cluster:
    """What ``_increment`` asks of a cluster: its clients and their extra addresses."""

    spec = _Spec()

    def client_addresses(self, client: str, count: int) -> list[str]:
        return [f"{client}-a{i}" for i in range(count)]


def test_each_step_opens_the_difference_from_addresses_of_its_own() -> None:
    bench = Bench(_Cluster(), BenchOptions(), say=lambda _m: None)  # type: ignore[arg-type]
    used: dict[str, int] = {}
    assert bench._increment(0, 50_000, used) == {"c1": (["c1-a0"], 25_000),
                                                 "c2": (["c2-a0"], 25_000)}  # fmt: skip
    # the next 25,000 each do not pile onto c1-a0 (it would hold 37,500): new addresses
    plan = bench._increment(50_000, 100_001, used)
    assert plan["c1"] == (["c1-a1", "c1-a2"], 25_001)  # 25,001: two, 25,000 at most each
    assert plan["c2"] == (["c2-a1"], 25_000)
    assert used == {"c1": 3, "c2": 2}
    assert bench._increment(0, 1, {}) == {"c1": (["c1-a0"], 1)}


def test_the_table_size_is_read_as_the_namespace_shows_it(tmp_path: Path) -> None:
    (tmp_path / "ip_vs").write_text(
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
    )
    bits = tmp_path / "conn_tab_bits"
    assert table_size(tmp_path, bits) == {"table_size": 4096}
    bits.write_text("16\n")
    (tmp_path / "ip_vs_status").write_text("Conns:\t0\n")
    assert table_size(tmp_path, bits) == {"table_size": 4096, "ip_vs_status": "Conns:\t0\n",
                                          "conn_tab_bits": 16}  # fmt: skip


def _rate_row(rate: float, p50: float, p99: float, **extra: object) -> dict[str, object]:
    return {"rate_per_s": rate, "connect_ms": {"p50": p50, "p99": p99, "max": p99 * 2}} | extra


def _point(
    held: int, rates: list[float], ratio: float | None, active: int | None,
    paired: float | None = None,
) -> dict[str, object]:  # fmt: skip
    rows = [_rate_row(r, 2.0, 9.0) for r in rates]
    return {
        "level": held, "held": held, "ipvs_active": active,
        "exact": None if active is None else active == held,
        "memory": {"ip_vs_conn_entries": active or 0, "table_size": 4096},
        "bytes_per_entry": 320.0 if active else None,
        "rate": {"runs": rows, "drifted": False, "figures": {
            "rate_per_s": spread(rates), "p50_ms": spread([2.0] * len(rates)),
            "p99_ms": spread([9.0] * len(rates))}},
        "rate_vs_lowest_level": ratio,
        "reference": {"runs": [], "drifted": False, "figures": {"rate_per_s": spread([500.0])}},
        "paired_vs_lowest_level": paired,
    }  # fmt: skip


def _curve(path: str, points: list[dict[str, object]], through_ipvs: bool) -> dict[str, object]:
    return {
        "path": path, "levels": [p["level"] for p in points], "points": points,
        "held": points[-1]["held"], "resets": 0, "failed": 0, "hold_s": 60.0,
        "client_established_end": points[-1]["held"],
        "ipvs_active_end": points[-1]["held"] if through_ipvs else None, "exact": True,
    }  # fmt: skip


def _bench_json(kernel: str = "6.1") -> dict[str, object]:
    tput = Bench._ratios(_runs([1000, 990], nat=[800, 790], dr=[950, 940]), "mbit_s")
    sweep = {}
    for conc, (d, n) in {1: (300, 280), 4: (800, 700)}.items():
        failed = {"timeout": 1, "EHOSTUNREACH": 1}
        runs = {"direct": [_rate_row(d, 2.0, 8.0), _rate_row(d + 50, 2.1, 8.5)],
                "nat": [_rate_row(n, 2.2, 9.0, failures={"timeout": 2}),
                        _rate_row(n + 20, 2.3, 9.5, failures=failed)]}  # fmt: skip
        sweep[conc] = (runs, Bench._rate_figures(runs))
    chosen_runs, chosen = sweep[4]
    rate = {"connections": 2000, "concurrency": 4, "runs": chosen_runs,
            "sweep": {str(c): f for c, (_, f) in sweep.items()}, **chosen}  # fmt: skip
    scale = {
        "direct": _curve("direct", [_point(0, [1000, 1010], 1.0, None, 1.0),
                                    _point(1000, [900, 910], 0.9, None, 0.9)], False),
        # the host slowed down while nat's curve ran: its reference fell alike
        "nat": _curve("nat", [_point(0, [800, 790], 1.0, 0, 1.0),
                              _point(1000, [600, 610], 0.75, 1000, 0.9)], True),
    }  # fmt: skip
    return {
        "run_id": "b1", "commit": "abc", "timings": {"bench_s": 100.0},
        "environment": {"kernel": kernel, "where": "guest", "emulation": "tcg"},
        "cmdline": "console=ttyS0 slab_nomerge ip_vs.conn_tab_bits=16",
        "goals": {"throughput_ratio": {"nat": 0.8, "dr": 0.9}, "connect_rate_ratio": 0.9,
                  "connect_p99_vs_direct": 1.2},
        "throughput": tput, "connect_rate": rate, "scale": scale,
    }  # fmt: skip


def test_bench_summary_states_figures_against_goals() -> None:
    text = bench_summary(_bench_json())
    assert "nat     795 Mbit/s [790..800]" in text
    assert "vs direct 0.799 [0.798..0.8] (goal >= 0.8)" in text
    assert "connect rate at concurrency 4, 2000 connections each" in text
    assert "max 19 ms + failed: 3 timeout, 1 EHOSTUNREACH" in text
    assert "of direct's; goal <= 1.2" in text
    assert "saturation sweep" in text and "x0.86" in text  # nat 700/800, 720/850 at 4
    assert "scale curve nat: held 1000 at the top" in text and "0 resets" in text
    assert "vs IPVS ActiveConn 1000 at the end (exact)" in text
    # nat fell to 0.75 of its rate, direct to 0.9: IPVS's own share 0.833
    assert "IPVS's own share of the slowdown, nat (rate vs lowest, over direct's): 0: 1.0, " \
           "1000: 0.833" in text  # fmt: skip
    # over the reference measured beside each rate, nat fell as far as direct: none
    assert "IPVS's own share of the slowdown, nat (paired with the reference, vs lowest, " \
           "over direct's): 0: 1.0, 1000: 1.0" in text  # fmt: skip
    assert "slab_nomerge ip_vs.conn_tab_bits=16" in text


def test_a_bench_from_before_the_reference_gets_the_plain_share_only() -> None:
    data = _bench_json()
    for curve in data["scale"].values():  # type: ignore[attr-defined]
        for point in curve["points"]:
            del point["reference"], point["paired_vs_lowest_level"]
    text = bench_summary(data)
    assert "(rate vs lowest, over direct's)" in text and "paired with" not in text
    assert "      1000       1000" in text and " 0.75         -       -" in text


def test_report_renders_a_bench_run(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text(json.dumps(_bench_json()))
    report = render(tmp_path).read_text()
    assert "<h2>Bench</h2>" in report
    for png in ("bench_throughput.png", "bench_connect_rate.png", "bench_sweep.png",
                "bench_scale.png"):  # fmt: skip
        assert (tmp_path / png).stat().st_size > 1000
        assert png in report


def test_kernels_side_by_side(tmp_path: Path) -> None:
    other = _bench_json("7.2")
    other["scale"]["nat"]["points"][1]["rate_vs_lowest_level"] = 0.97  # type: ignore[index]
    text = bench_kernels({"6.1": _bench_json(), "sid": other}, tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("scale nat top/lowest"))
    assert row.split()[-2:] == ["0.75", "0.97"]
    header = text.splitlines()[1].split()
    assert header[1:] == ["6.1", "bits=16", "7.2", "bits=16"]  # the table size it was booted with
    assert "connect rate nat/direct" in text
    for name in ("bench-kernels.txt", "bench-kernels.json", "bench-kernels.html",
                 "bench_kernels_scale.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 100


def test_two_benches_alike_are_told_apart_by_their_names(tmp_path: Path) -> None:
    text = bench_kernels({"first": _bench_json(), "again": _bench_json()}, tmp_path)
    assert text.splitlines()[1].split()[1:] == ["first", "again"]
