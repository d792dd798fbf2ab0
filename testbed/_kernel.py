"""Which kernel runs the testbed: the running one if it has IPVS, else a guest.

The running kernel is probed the way an administrator would: ``modprobe
ip_vs`` and then ``/proc/net/ip_vs``. A guest kernel is a Debian
``vmlinuz`` plus its modules tree: the installed ``linux-image-amd64`` by
default, a path, or a Debian release whose kernel package is downloaded and
unpacked into the project cache (never installed system-wide).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._errors import TestbedError

PROC_IPVS = Path("/proc/net/ip_vs")
# modules every conformance run needs; TUN additionally needs ipip (skipped without)
CORE_MODULES = ("ip_vs", "ip_vs_rr")


def modprobe(module: str) -> bool:
    """Load a module; True if it is now available (built in or loaded)."""
    if not shutil.which("modprobe"):
        return False
    done = subprocess.run(["modprobe", "-q", module], capture_output=True)
    return done.returncode == 0


def running_kernel_has_ipvs() -> bool:
    """True if this kernel provides IPVS (possibly after loading ip_vs)."""
    if PROC_IPVS.exists():
        return True
    return os.geteuid() == 0 and modprobe("ip_vs") and PROC_IPVS.exists()


def require_modules(*modules: str) -> None:
    """Load modules or fail with one line naming the first one missing."""
    for module in modules:
        if not modprobe(module):
            raise TestbedError(
                f"kernel {os.uname().release} lacks module {module} (modprobe {module} failed)"
            )


@dataclass(frozen=True, kw_only=True)
class GuestKernel:
    """A kernel image to boot in a guest, with the modules tree that matches it."""

    version: str
    vmlinuz: Path
    modules_root: Path  # the directory that holds lib/modules/<version>
    origin: str

    @property
    def modules_dir(self) -> Path:
        return self.modules_root / "lib" / "modules" / self.version

    @property
    def is_host_tree(self) -> bool:
        """True if the modules live in the host's own /lib/modules."""
        return self.modules_root == Path("/")


_VMLINUZ = re.compile(r"^vmlinuz-(?P<version>.+)$")


def _has_ipvs(modules_dir: Path) -> bool:
    return (modules_dir / "kernel" / "net" / "netfilter" / "ipvs").is_dir()


def _from_vmlinuz(path: Path, origin: str) -> GuestKernel:
    match = _VMLINUZ.match(path.name)
    if not match:
        raise TestbedError(f"kernel image {path}: name must be vmlinuz-<version>")
    version = match["version"]
    # an unpacked package: <root>/boot/vmlinuz-V next to <root>/lib/modules/V
    for root in (path.parent.parent, Path("/")):
        if (root / "lib" / "modules" / version).is_dir():
            kernel = GuestKernel(version=version, vmlinuz=path, modules_root=root, origin=origin)
            if not _has_ipvs(kernel.modules_dir):
                raise TestbedError(f"kernel {version} lacks IPVS modules ({kernel.modules_dir})")
            return kernel
    raise TestbedError(f"kernel image {path}: no modules directory lib/modules/{version} found")


def installed_kernels(boot: Path = Path("/boot")) -> list[GuestKernel]:
    """Kernels installed on this machine whose modules include IPVS, newest first."""
    found = []
    for image in sorted(boot.glob("vmlinuz-*"), reverse=True):
        try:
            found.append(_from_vmlinuz(image, origin="installed"))
        except TestbedError:
            continue
    found.sort(key=lambda k: _version_key(k.version), reverse=True)
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def resolve_kernel(choice: str | None, *, cache: Path) -> GuestKernel:
    """Turn ``--kernel`` into a bootable guest kernel.

    ``None``: the newest installed kernel with IPVS (linux-image-amd64).
    A path: that vmlinuz. A Debian release (``trixie``, ``sid``) or a version
    prefix (``6.12``, ``7``): downloaded and unpacked into ``cache``.
    """
    if choice is None:
        kernels = installed_kernels()
        if not kernels:
            raise TestbedError(
                "no guest kernel with IPVS in /boot: install linux-image-amd64 "
                "(scripts/install.sh does)"
            )
        return kernels[0]
    path = Path(choice)
    if "/" in choice or path.exists():
        if not path.is_file():
            raise TestbedError(f"kernel image {choice} does not exist")
        return _from_vmlinuz(path.resolve(), origin="path")
    for kernel in installed_kernels():
        if kernel.version == choice or kernel.version.startswith(choice + "."):
            return kernel
    from ._debian import fetch_kernel  # network access only when asked for

    return fetch_kernel(choice, cache=cache)
