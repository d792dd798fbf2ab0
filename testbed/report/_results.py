"""Collect a run's results as JSON, next to pytest's JUnit XML.

``results/<run-id>/results.json`` holds the environment (kernel, guest or
native, emulation, tool versions), timings, every test's outcome with its
docstring, and the typed observations the run recorded (testbed.observe).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ..guest import boot_uptime, in_guest
from ..observe import recorded, recorded_timings, to_json


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def tool_versions() -> dict[str, str]:
    import pyroute2
    import scapy

    versions = {
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "scapy": scapy.VERSION,
        "pyroute2": getattr(pyroute2, "__version__", "unknown"),
        "ipvsadm": _first_line(["ipvsadm", "--version"]),
        "keepalived": _first_line(["keepalived", "--version"]),
        "iperf3": _first_line(["iperf3", "--version"]),
        "curl": _first_line(["curl", "--version"]),
    }
    try:
        from mininet.net import VERSION

        versions["mininet"] = VERSION
    except ImportError:
        versions["mininet"] = "not installed"
    return versions


def environment(*, uptime: float) -> dict[str, Any]:
    """Where the suite ran; ``uptime`` at its start is the guest's boot time."""
    guest = in_guest()
    return {
        "kernel": os.uname().release,
        "kernel_build": os.uname().version,
        "kernel_origin": os.environ.get("LVS_TESTBED_KERNEL_ORIGIN", "running"),
        "where": "guest" if guest else "native",
        "emulation": guest or "none (native)",
        "guest_boot_s": round(uptime, 2) if guest else None,
        "versions": tool_versions(),
        # every kernel-ledger entry's feature probe: what a matrix run compares by
        "features": _features(),
        "kernel_config": _kernel_config(),
    }


def _kernel_config() -> dict[str, str]:
    """The IPVS-related options (conformance/kernel.config's) as this kernel was built:
    from the host's record of its config, /proc/config.gz or /boot ("unknown" if none)."""
    import gzip

    from ..guest._source import config_text, read_fragment

    candidates = [Path(os.environ.get("LVS_TESTBED_KERNEL_CONFIG", "/nonexistent")),
                  Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]  # fmt: skip
    for path in candidates:
        if path.is_file():
            raw = path.read_bytes()
            text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(errors="replace")
            found = config_text(text)
            return {o: found.get(o, "n") for o in read_fragment().options}
    return {"unknown": "no kernel config found"}


def _features() -> dict[str, bool]:
    from ..kernel import load_ledger, probe_features
    from ..util import TestbedError

    try:
        return probe_features(load_ledger())
    except TestbedError as exc:
        return {"ledger unreadable": False, str(exc): False}


def _doc(item: pytest.Item) -> str:
    obj = getattr(item, "obj", None)
    return (getattr(obj, "__doc__", None) or "").strip()


class ResultsPlugin:
    """pytest plugin writing results.json for one run."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.meta = meta
        self.tests: dict[str, dict[str, Any]] = {}
        self.docs: dict[str, str] = {}
        self.started = time.time()
        self.uptime_at_start = boot_uptime()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.docs[item.nodeid] = _doc(item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(
            report.nodeid,
            {
                "nodeid": report.nodeid,
                "doc": self.docs.get(report.nodeid, ""),
                "outcome": "passed",
                "duration_s": 0.0,
            },
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["details"] = str(report.longrepr)
            entry["sections"] = {title: text for title, text in report.sections}
        elif report.skipped and hasattr(report, "wasxfail"):  # a known deviation, seen
            entry["outcome"] = "xfailed"
            entry["skip_reason"] = str(report.wasxfail)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            entry["skip_reason"] = re.sub(r"^Skipped: ", "", str(reason))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        tests = list(self.tests.values())
        counts = {o: sum(t["outcome"] == o for t in tests) for o in
                  ("passed", "failed", "error", "skipped", "xfailed")}  # fmt: skip
        data = {
            **self.meta,
            "environment": environment(uptime=self.uptime_at_start),
            "timings": ({"guest_boot_s": round(self.uptime_at_start, 2)} if in_guest() else {})
            | {k: round(v, 2) for k, v in recorded_timings().items()}
            | {"suite_s": round(time.time() - self.started, 2)},
            "counts": counts,
            "exit_status": int(exitstatus),
            "observations": [to_json(o) for o in recorded()],
            "tests": tests,
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=2, default=str))
