"""Guest kernel images: a vmlinuz and the modules tree that matches it.

vng finds the modules itself next to the image (``<root>/lib/modules/V`` or
``<root>/usr/lib/modules/V``) and links them into the guest. Both the classic
Debian package layout and the merged-/usr one (Debian 14+) are understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..util import TestbedError


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
    tree: Path | None = None  # a built tree: vng boots it with its in-tree modules

    @property
    def config(self) -> Path:
        """Its build configuration: a tree's .config, a package's config-<version>."""
        if self.tree is not None:
            return self.tree / ".config"
        beside = self.vmlinuz.parent / f"config-{self.version}"
        return beside if beside.exists() else self.modules_dir / "config"


_VMLINUZ = re.compile(r"^vmlinuz-(?P<version>.+)$")


def _has_ipvs(modules_dir: Path) -> bool:
    return (modules_dir / "kernel" / "net" / "netfilter" / "ipvs").is_dir()


def _checked(kernel: GuestKernel) -> GuestKernel:
    if not _has_ipvs(kernel.modules_dir):
        raise TestbedError(f"kernel {kernel.version} lacks IPVS modules ({kernel.modules_dir})")
    return kernel


def from_vmlinuz(path: Path, origin: str) -> GuestKernel:
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
    return from_vmlinuz(images[0], origin=origin)


def installed_kernels(boot: Path = Path("/boot")) -> list[GuestKernel]:
    """Kernels installed on this machine whose modules include IPVS, newest first."""
    found = []
    for image in sorted(boot.glob("vmlinuz-*"), reverse=True):
        try:
            found.append(from_vmlinuz(image, origin="installed"))
        except TestbedError:
            continue
    found.sort(key=lambda k: _version_key(k.version), reverse=True)
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))
