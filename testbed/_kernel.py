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
    """A kernel image to boot in a guest, with the modules tree that matches it.

    vng finds the modules itself next to the image (``<root>/lib/modules/V``
    or ``<root>/usr/lib/modules/V``) and links them into the guest.
    """

    version: str
    vmlinuz: Path
    modules_dir: Path
    origin: str


_VMLINUZ = re.compile(r"^vmlinuz-(?P<version>.+)$")


def _has_ipvs(modules_dir: Path) -> bool:
    return (modules_dir / "kernel" / "net" / "netfilter" / "ipvs").is_dir()


def _checked(kernel: GuestKernel) -> GuestKernel:
    if not _has_ipvs(kernel.modules_dir):
        raise TestbedError(f"kernel {kernel.version} lacks IPVS modules ({kernel.modules_dir})")
    return kernel


def _from_vmlinuz(path: Path, origin: str) -> GuestKernel:
    # merged-/usr packages (Debian 14+): <root>/usr/lib/modules/V/vmlinuz
    if path.name == "vmlinuz" and path.parent.parent.name == "modules":
        return _checked(GuestKernel(version=path.parent.name, vmlinuz=path,
                                    modules_dir=path.parent, origin=origin))  # fmt: skip
    match = _VMLINUZ.match(path.name)
    if not match:
        raise TestbedError(f"kernel image {path}: name must be vmlinuz-<version>")
    version = match["version"]
    # an unpacked package: <root>/boot/vmlinuz-V next to <root>/[usr/]lib/modules/V
    for root in (path.parent.parent, Path("/")):
        for lib in ("lib", "usr/lib"):
            modules = root / lib / "modules" / version
            if modules.is_dir():
                return _checked(GuestKernel(version=version, vmlinuz=path,
                                            modules_dir=modules, origin=origin))  # fmt: skip
    raise TestbedError(f"kernel image {path}: no modules directory lib/modules/{version} found")


def kernel_from_tree(root: Path, *, origin: str) -> GuestKernel:
    """The kernel in an unpacked package tree (either layout)."""
    images = sorted(root.glob("boot/vmlinuz-*")) + sorted(root.glob("usr/lib/modules/*/vmlinuz"))
    if not images:
        raise TestbedError(f"no vmlinuz in unpacked kernel tree {root}")
    return _from_vmlinuz(images[0], origin=origin)


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
