"""Remove everything a testbed run may leave behind, even after SIGKILL.

Our processes are recognised by an environment marker every process of the
network inherits (Mininet shells, real-server programs, daemons); our links
by the bridge names; our guests by qemu's ``-name lvs-testbed``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ._cluster import BRIDGES, MARK_ENV
from ._vm import GUEST_NAME


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _marked_processes() -> list[int]:
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARK_ENV}=".encode() in env:
            found.append(int(entry.name))
    return found


def _guest_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-name" in argv or b"--name" in argv:
            for i, arg in enumerate(argv[:-1]):
                if arg in (b"-name", b"--name") and argv[i + 1].startswith(GUEST_NAME.encode()):
                    found.append(int(entry.name))
    return found


def _kill(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in alive):
            time.sleep(0.1)
        pids = [p for p in alive if Path(f"/proc/{p}").exists()]


def _our_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if name in BRIDGES or any(name.startswith(f"{b}-eth") for b in BRIDGES):
            names.append(name)
    return names


def clean_native(*, quiet: bool = False) -> list[str]:
    """Kill marked processes and delete our bridges and veths; list what was removed."""
    removed = []
    pids = _marked_processes()
    if pids:
        _kill(pids)
        removed.append(f"{len(pids)} process(es) of an earlier network")
    for name in _our_links():
        if subprocess.run(["ip", "link", "del", name], capture_output=True).returncode == 0:
            removed.append(f"link {name}")
    if not quiet:
        for item in removed:
            print(f"[clean] removed {item}")
    return removed


def clean_guests(*, quiet: bool = False) -> list[str]:
    """Kill leftover testbed guests (qemu and the vng wrapper around it)."""
    pids = _guest_processes()
    if pids:
        _kill(pids)
    removed = [f"guest process {p}" for p in pids]
    if not quiet:
        for item in removed:
            print(f"[clean] removed {item}")
    return removed
