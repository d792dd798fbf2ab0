"""The daemons a lab's hosts run (keepalived, started by a student or a lab's setup):
found by their network namespace (a Mininet host shares the process table), aged,
and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("keepalived",)  # what a lab's hosts may run that a restart stops
STOP_BOUND_S = 15  # keepalived releases its addresses and says goodbye (priority 0) on SIGTERM


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def age(pid: int) -> float:
    """Seconds since the process started (stat's starttime, in clock ticks after boot)."""
    started = int(_stat(pid)[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def _commands() -> Iterator[tuple[int, str]]:
    """(pid, command name) of every process now (a process gone meanwhile is left out)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(entry.name), Path(entry.path, "comm").read_text().strip()


def daemons_in(host_pids: list[int], names: tuple[str, ...] = DAEMONS) -> dict[int, int]:
    """pid -> parent pid of every process called one of ``names`` whose network
    namespace is one of the hosts' (a Mininet host shares the process table)."""
    nets = {os.readlink(f"/proc/{p}/ns/net") for p in host_pids}
    found = {}
    for pid, comm in _commands():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if comm in names and os.readlink(f"/proc/{pid}/ns/net") in nets:
                found[pid] = _parent(pid)
    return found


def sync_threads() -> list[str]:
    """The IPVS sync daemons' kernel threads running now, in any namespace
    (ip_vs_sync.c names them ipvs-m:<id>:<n> and ipvs-b:<id>:<n>)."""
    return [comm for _, comm in _commands() if comm.startswith(("ipvs-m:", "ipvs-b:"))]


def stop_daemons(host_pids: list[int]) -> None:
    """SIGTERM to each daemon's parent (its children stop with it, cleanly), SIGKILL to
    whatever is left after STOP_BOUND_S."""
    found = daemons_in(host_pids)
    for pid in (p for p, parent in found.items() if parent not in found):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND_S
    while (alive := [p for p in found if os.path.exists(f"/proc/{p}")]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
