"""Plain `pytest` (no paths) in the checkout: what it collects here, and the one line
that says how to run the conformance suite where it cannot run natively."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.cli._plain import HOW, conformance_unavailable

REPO = Path(__file__).resolve().parent.parent


def test_plain_pytest_collects_what_this_machine_can_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    collected = [line for line in out.splitlines() if "::" in line]
    assert any(line.startswith("tests/") for line in collected)
    assert not any("test_guest_lifecycle" in line for line in collected), "vm tests need -m vm"
    if why := conformance_unavailable():
        assert not any(line.startswith("conformance/") for line in collected)
        assert f"conformance suite not run ({why}): {HOW}" in out
    else:
        assert any(line.startswith("conformance/") for line in collected)
