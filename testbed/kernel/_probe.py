"""Probes of the running kernel: what it has, found by trying, never by version.

``modprobe`` then ``/proc/net/ip_vs`` is how an administrator checks for
IPVS; the same probes decide between native and guest runs and name the
missing piece in a test's skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..util import TestbedError

PROC_IPVS = Path("/proc/net/ip_vs")


_LOADED: set[str] = set()  # a loaded module stays loaded: asked once per process


def modprobe(module: str) -> bool:
    """Load a module; True if it is now available (built in or loaded)."""
    if module in _LOADED:
        return True
    if not shutil.which("modprobe"):
        return False
    done = subprocess.run(["modprobe", "-q", module], capture_output=True)
    if done.returncode == 0:
        _LOADED.add(module)
    return done.returncode == 0


def running_kernel_has_ipvs() -> bool:
    """True if this kernel provides IPVS (possibly after loading ip_vs)."""
    if PROC_IPVS.exists():
        return True
    return os.geteuid() == 0 and modprobe("ip_vs") and PROC_IPVS.exists()


def missing_module(*modules: str, needed_by: str) -> str | None:
    """The skip reason naming the first module this kernel cannot load, or None."""
    for module in modules:
        if not modprobe(module):
            return f"kernel lacks module {module} (needed by {needed_by})"
    return None


def missing_sysctl(name: str, *, needed_by: str) -> str | None:
    """The skip reason naming net.ipv4.vs.``name`` if this kernel's IPVS lacks it, or None."""
    if not (modprobe("ip_vs") and Path("/proc/sys/net/ipv4/vs", name).exists()):
        return f"kernel lacks sysctl net.ipv4.vs.{name} (needed by {needed_by})"
    return None


def require_modules(*modules: str) -> None:
    """Load modules or fail with one line naming the first one missing."""
    for module in modules:
        if not modprobe(module):
            raise TestbedError(
                f"kernel {os.uname().release} lacks module {module} (modprobe {module} failed)"
            )
