"""Small helpers for processes: reading a run's output, the tail of a daemon's log."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


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


def tail_file(path: Path, title: str, lines: int = 25) -> str:
    """The last ``lines`` of a log file under a ``--- title`` heading, for diagnostics."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no {title}: {path} missing)"
    return f"--- {title} (last {lines} lines)\n" + "\n".join(text[-lines:])
