"""Bad input gets one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
