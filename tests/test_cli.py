"""Bad input gets one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed._report import render

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--mode", "nat,snat"], "unknown forwarding mode 'snat'"),
        (["run", "--topology", "/nonexistent.toml"], "does not exist"),
        (["lab", "xyz"], "unknown forwarding mode 'xyz'"),
        (["lab", "dr", "--scheduler", "fastest"], "unknown scheduler 'fastest'"),
        (["run", "--kernel", "/nonexistent/vmlinuz-1"], "kernel image"),
        (["bench", "--repetitions", "0"], "must be positive"),
        (["bench", "--scale-mode", "nat,foo"], "unknown forwarding mode 'foo'"),
        (["bench", "--hold", "-1"], "--hold must be >= 0"),
        (["bench", "--failover-fault", "unplug"], "unknown fault 'unplug'"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvs-testbed: error:"), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_report_renders_from_results_json(tmp_path: Path) -> None:
    data = {
        "run_id": "r1",
        "environment": {"kernel": "6.1.0-56-amd64", "kernel_origin": "installed",
                        "where": "guest", "emulation": "tcg", "versions": {"scapy": "2.8.0"}},
        "timings": {"topology_build_s": 17.0, "suite_s": 300.0},
        "counts": {"passed": 1, "failed": 1},
        "observations": {
            "forwarding.nat": {"responses_per_server": {"r1": 2, "r2": 2}},
            "scheduler.wrr[4, 3, 2]": {"flows": 9, "observed": {"r1": 4, "r2": 3, "r3": 2},
                                       "expected": {"r1": 4, "r2": 3, "r3": 2}, "mismatches": 0},
        },
        "tests": [
            {"nodeid": "t::ok[nat]", "doc": "Source: ipvsadm(8)", "outcome": "passed",
             "duration_s": 1.0},
            {"nodeid": "t::bad[dr]", "doc": "", "outcome": "failed", "duration_s": 2.0,
             "details": "expected X got Y", "sections": {"LVS state": "TCP 203.0.113.100:80"}},
        ],
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(data))
    report = render(tmp_path).read_text()
    summary = (tmp_path / "summary.txt").read_text()
    assert "6.1.0-56-amd64" in summary and "FAILED t::bad[dr]" in summary
    assert "t::ok[nat]" in report and "expected X got Y" in report and "TCP 203.0.113.100" in report
    assert (tmp_path / "timings.png").stat().st_size > 0
    assert (tmp_path / "forwarding.png").stat().st_size > 0
    assert (tmp_path / "schedulers.png").stat().st_size > 0
    assert "Schedulers: model vs kernel" in report and "wrr[4, 3, 2]" in report


def test_results_record_skip_and_xfail_reasons(tmp_path: Path) -> None:
    """A known deviation (xfail) is recorded as such with its reason, not as a bare skip."""
    (tmp_path / "test_inner.py").write_text(
        "import pytest\n"
        "def test_ok():\n    assert True\n"
        "def test_skip():\n    pytest.skip('kernel lacks module ip_vs_twos')\n"
        "def test_known():\n    pytest.xfail('upstream bug #1')\n"
    )
    runner = (
        "import sys, pytest\n"
        "from pathlib import Path\n"
        "from testbed._results import ResultsPlugin\n"
        "plugin = ResultsPlugin(Path(sys.argv[1]) / 'out', {'run_id': 'r'})\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]], plugins=[plugin]))\n"
    )
    done = subprocess.run([sys.executable, "-c", runner, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    outcomes = {
        t["nodeid"].split("::")[1]: (t["outcome"], t.get("skip_reason")) for t in data["tests"]
    }
    assert outcomes == {
        "test_ok": ("passed", None),
        "test_skip": ("skipped", "kernel lacks module ip_vs_twos"),
        "test_known": ("xfailed", "upstream bug #1"),
    }
    assert data["counts"]["xfailed"] == 1
