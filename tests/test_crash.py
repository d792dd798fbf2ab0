"""A crash fault leaves no process a chance to clean up (testbed.cluster.crash)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from testbed.cluster import crash

# a parent and a child that, like keepalived's VRRP child, is sent SIGTERM when its
# parent dies and then shuts down "cleanly" (here: writes a file)
_FAMILY = """
import ctypes, os, signal, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    def clean_shutdown(*_):
        open(marker, "w").write("clean shutdown")
        sys.exit(0)
    signal.signal(signal.SIGTERM, clean_shutdown)
    open(marker + ".tmp", "w").write(str(os.getpid()))
    os.rename(marker + ".tmp", marker + ".child")  # seen whole, or not at all
    time.sleep(60)
else:
    time.sleep(60)
"""


def _running(pid: int) -> bool:
    try:  # a zombie is dead: only its parent (or init) has yet to reap it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_crash_gives_no_process_a_clean_shutdown(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown"
    parent = subprocess.Popen([sys.executable, "-c", _FAMILY, str(marker)])
    child_file = Path(f"{marker}.child")
    deadline = time.monotonic() + 10
    while not child_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_file.read_text())
    crash([parent.pid, child])  # the parent first: its death would warn the child
    parent.wait(10)
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), "the child survived"
    assert not marker.exists(), "the child ran its clean shutdown"


def test_a_network_being_built_holds_orphan_clean_up_back() -> None:
    """While one run builds its network (its bridges unmarked for a while), another
    run's orphan clean-up cannot start, and can once the build is over."""
    import fcntl

    from testbed.cluster import _cleanup

    def free() -> bool:
        with open(_cleanup._BUILDING, "a") as other:  # another run: its own open file
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    with _cleanup.building():
        assert not free()
    assert free()
