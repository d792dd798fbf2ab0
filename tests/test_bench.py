"""The bench's arithmetic and its report, from synthetic figures (no root, no guest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.bench import Bench, BenchOptions
from testbed.report import bench_summary, render


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
        {"connections": 0},
        {"hold": -1},
        {"modes": ("nat", "snat")},
        {"failover_fault": "unplug"},
        {"connect_tool": "wrk"},
    ],
)
def test_bad_options_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(TestbedError):
        BenchOptions(**changes)  # type: ignore[arg-type]


def _bench_json() -> dict[str, object]:
    tput = Bench._ratios(_runs([1000, 990], nat=[800, 790], dr=[950, 940]), "mbit_s")
    rate_runs = {"direct": [{"rate_per_s": 900}, {"rate_per_s": 950}],
         "nat": [{"rate_per_s": 700, "failures": {"timeout": 2}},
                 {"rate_per_s": 720, "failures": {"timeout": 1, "EHOSTUNREACH": 1}}]}  # fmt: skip
    rate = Bench._ratios(rate_runs, "rate_per_s") | {"runs": rate_runs}
    ms = {"n": 10, "p50": 3.0, "p99": 20.0, "max": 40.0, "mean": 5.0}
    scale = {
        "connections": 1000,
        "ramped": {"held": 1000, "ramp_s": 10.0, "rate_per_s": 100.0, "connect_ms": ms,
                   "failed": 0, "ramp": [[0, 0], [5, 500], [10, 1000]]},
        "result": {"hold_s": 60.0},
        "resets": 0, "ipvs_active_before": 0, "client_established_end": 1000,
        "ipvs_active_end": 1000, "exact": True,
        "ip_vs_conn_slab_size": 320, "ip_vs_conn_table_bytes": 320_000,
        "guest_mem_used_kB": 51200,
        "rate_empty": {"rate_per_s": 800.0}, "rate_full": {"rate_per_s": 600.0},
        "rate_full_vs_empty": 0.75,
    }  # fmt: skip
    return {
        "run_id": "b1", "commit": "abc", "timings": {"bench_s": 100.0},
        "environment": {"kernel": "6.1", "where": "guest", "emulation": "tcg"},
        "goals": {"throughput_ratio": {"nat": 0.8, "dr": 0.9}, "connect_rate_ratio": 0.8},
        "throughput": tput,
        "connect_rate": rate | {"max_connect_ms": {"direct": 30.0, "nat": 40.0}},
        "scale": {"nat": scale},
    }  # fmt: skip


def test_bench_summary_states_figures_against_goals() -> None:
    text = bench_summary(_bench_json())
    assert "nat     795 Mbit/s [790..800]" in text
    assert "vs direct 0.799 [0.798..0.8] (goal >= 0.8)" in text
    assert "1000/1000 open" in text and "0 resets" in text
    assert "(exact; ActiveConn before the ramp 0)" in text
    assert "ratio 0.75" in text
    assert "max connect 40 ms + failed: 3 timeout, 1 EHOSTUNREACH" in text
    assert "0.3 MiB of IPVS connection entries (320 B each)" in text


def test_report_renders_a_bench_run(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text(json.dumps(_bench_json()))
    report = render(tmp_path).read_text()
    assert "<h2>Bench</h2>" in report
    for png in ("bench_throughput.png", "bench_connect_rate.png", "bench_ramp.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert png in report
