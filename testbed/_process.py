"""Small helpers for driving the testbed's own command line from tests."""

from __future__ import annotations

import subprocess
import time


def wait_for_line(proc: subprocess.Popen[str], marker: str, *, timeout: float) -> list[str]:
    """Read ``proc``'s output until a line contains ``marker``; return the lines read.

    Raises AssertionError (with the last lines) if the process ends or the
    timeout passes first; the process is killed then.
    """
    assert proc.stdout is not None, "start the process with stdout=PIPE"
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        if marker in line:
            return seen
    proc.kill()
    tail = "\n".join(seen[-30:])
    raise AssertionError(f"never saw {marker!r} in the output:\n{tail}")
