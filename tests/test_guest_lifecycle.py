"""Guest life cycle on the host: Ctrl-C kills the guest; `clean` removes a killed run's guest.

These boot a real guest (about a minute each under software emulation) and
need root: `lvs-testbed test` runs them after the conformance suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.cluster import guest_processes
from testbed.util import wait_for_line

pytestmark = pytest.mark.vm
REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "testbed.cli"]


@pytest.fixture(autouse=True)
def _root_and_no_guest() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("guest life-cycle tests need root (run them via `lvs-testbed test`)")
    assert not guest_processes(), "a testbed guest is already running"
    yield
    # a failed test must not leave its guest to the next one
    if guest_processes():
        subprocess.run([*CLI, "clean"], cwd=REPO, capture_output=True, timeout=120)


def _as_from_a_terminal() -> None:
    # a shell starts background jobs with SIGINT ignored, which children inherit;
    # a terminal's Ctrl-C reaches a foreground process whose SIGINT is the default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_run(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", "--mode", "nat", "-k", "rr_order", "--results", str(REPO / "results")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_as_from_a_terminal,
    )  # fmt: skip


def test_ctrl_c_kills_the_guest(tmp_path: Path) -> None:
    """SIGINT to `lvs-testbed run` ends the guest and exits 130, leaving no qemu."""
    proc = _start_run(tmp_path)
    wait_for_line(proc, "test session starts", timeout=600)  # the guest is fully up
    assert guest_processes(), "the guest should be running"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out[-2000:]}"
    assert "interrupted" in out
    assert not guest_processes(), "a guest survived Ctrl-C"


def test_clean_removes_the_guest_of_a_killed_run(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the guest survives, and `lvs-testbed clean` removes it."""
    proc = _start_run(tmp_path)
    wait_for_line(proc, "test session starts", timeout=600)  # the guest is fully up
    proc.kill()
    proc.wait(30)
    assert guest_processes(), "expected the killed run's guest to be left over"
    done = subprocess.run([*CLI, "clean"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stdout
    assert not guest_processes(), "clean left a guest running"
