"""Remove everything a testbed run may leave behind, even after SIGKILL.

Every process of a network (Mininet shells, real-server programs, daemons)
inherits an environment marker holding the pid of the run that owns it; our
bridges carry the same owner in their alias; our guests run as qemu
``-name lvs-testbed``. A run cleans up its own things on exit, removes
orphans (owner dead) before it starts, and ``lvs-testbed clean`` removes all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..guest import GUEST_NAME

MARK_ENV = "LVS_TESTBED_NET"  # value: owner pid
ALIAS_PREFIX = "lvs-testbed owner="
_DEFAULT_BRIDGE = re.compile(r"^lv[sab](out|in)0$")  # a run's, and two runs alongside it
_BUILDING = Path(tempfile.gettempdir(), "lvs-testbed-building.lock")


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Held while a run creates its bridges until they are marked as its own, and while
    orphans are cleaned: runs side by side in one kernel (`test`'s runs alongside, the
    life-cycle test's nested run) never take a bridge another is still building, not
    yet marked, for a crashed run's leftover."""
    with open(_BUILDING, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the run dies
        yield


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


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


def marked_processes() -> dict[int, int]:
    """pid -> owner pid, for every marked process except us and our ancestors."""
    mine = _ancestors()
    found = {}
    key = f"{MARK_ENV}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(key):
                value = var[len(key) :].decode(errors="replace")
                found[int(entry.name)] = int(value) if value.isdigit() else 0
    return found


def processes_in_mount_ns(inode: int) -> list[int]:
    """Processes whose mount namespace has this inode number."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "mnt").st_ino == inode:
                    out.append(int(entry.name))
    return out


def _private_mount_ns_processes() -> dict[int, int]:
    """pid -> owner pid for daemons that clear their environment (heartbeat): they are
    found by the private mount namespace each records under a run's work directory."""
    found = {}
    for record in Path(tempfile.gettempdir()).glob("lvs-testbed-*/heartbeat-*/mntns"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            inode, owner = (int(x) for x in record.read_text().split()[:2])
            # only heartbeat's own processes: a namespace inode can be reused
            found |= dict.fromkeys(
                (p for p in processes_in_mount_ns(inode) if _is_heartbeat(p)), owner
            )
    return found


def _is_heartbeat(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"heartbeat")
    except OSError:
        return False


def guest_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg in (b"-name", b"--name") and argv[i + 1].startswith(GUEST_NAME.encode()):
                found.append(int(entry.name))
                break
    return found


def crash(pids: list[int]) -> None:
    """Kill processes as a crash would: all stopped first, so none sees another die.

    A daemon's child told of its parent's death (keepalived's VRRP child gets
    SIGTERM) would otherwise shut down cleanly before its own SIGKILL lands.
    """
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def kill_processes(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is still alive after 3 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.05)
        pids = [p for p in alive if _alive(p)]
        if not pids:
            return


def our_bridges() -> dict[str, int]:
    """bridge name -> owner pid, for bridges the testbed created."""
    out = subprocess.run(
        ["ip", "-o", "-d", "link", "show", "type", "bridge"], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if f"alias {ALIAS_PREFIX}" in line:
            owner = line.split(f"alias {ALIAS_PREFIX}", 1)[1].split()[0]
            found[name] = int(owner) if owner.isdigit() else 0
        elif _DEFAULT_BRIDGE.match(name):  # created, then interrupted before marking
            found[name] = 0
    return found


def mark_bridge(name: str, owner: int) -> None:
    subprocess.run(["ip", "link", "set", name, "alias", f"{ALIAS_PREFIX}{owner}"], check=True)


def _delete_bridge(name: str) -> bool:
    # the switch-side veth ends are attached to it: delete them too
    out = subprocess.run(["ip", "-o", "link", "show", "master", name], capture_output=True,
                         text=True).stdout  # fmt: skip
    for line in out.splitlines():
        port = line.split(":", 2)[1].strip().split("@", 1)[0]
        subprocess.run(["ip", "link", "del", port], capture_output=True)
    return subprocess.run(["ip", "link", "del", name], capture_output=True).returncode == 0


def clean_native(*, owner: int | None = None, orphans_only: bool = False,
                 quiet: bool = False) -> list[str]:  # fmt: skip
    """Kill marked processes and delete marked bridges; list what was removed.

    ``owner``: only that run's things. ``orphans_only``: only things whose
    owner is dead. Neither: everything of ours (the `clean` command).
    """

    def selected(owner_pid: int) -> bool:
        if owner is not None:
            return owner_pid == owner
        return not (orphans_only and _alive(owner_pid))

    removed = []
    with building() if orphans_only else contextlib.nullcontext():
        marked = marked_processes() | _private_mount_ns_processes()
        pids = [pid for pid, o in marked.items() if selected(o)]
        if pids:
            kill_processes(pids)
            removed.append(f"{len(pids)} process(es) of a testbed network")
        for name, o in our_bridges().items():
            if selected(o) and _delete_bridge(name):
                removed.append(f"bridge {name}")
    if not quiet:
        for item in removed:
            print(f"[clean] removed {item}", flush=True)
    return removed


def clean_guests(*, quiet: bool = False) -> list[str]:
    """Kill leftover testbed guests (qemu and the vng wrapper around it)."""
    pids = guest_processes()
    if pids:
        kill_processes(pids)
    removed = [f"guest process {p}" for p in pids]
    if not quiet:
        for item in removed:
            print(f"[clean] removed {item}", flush=True)
    return removed
