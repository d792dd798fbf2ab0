"""Which kernel a guest boots: the installed one, an image path, or a Debian release.

A guest kernel is a Debian ``vmlinuz`` plus its modules tree: the installed
``linux-image-amd64`` by default, a path, or a Debian release whose kernel
package is downloaded and unpacked into the project cache (never installed
system-wide).
"""

from __future__ import annotations

from pathlib import Path

from ..util import TestbedError
from ._debian import fetch_kernel, fetch_pinned
from ._image import GuestKernel, from_vmlinuz, installed_kernels
from ._source import from_build_tree, is_build_tree


def resolve_kernel(choice: str | None, *, cache: Path) -> GuestKernel:
    """Turn ``--kernel`` into a bootable guest kernel.

    ``None``: the newest installed kernel with IPVS (linux-image-amd64).
    A path: that vmlinuz, or a built kernel tree (its bzImage and in-tree
    modules). ``pinned:RELEASE``: the kernel conformance/kernel-pins.toml records
    for a release, checksums verified (what CI boots). A Debian release
    (``trixie``, ``sid``) or a version prefix (``6.12``, ``7``): downloaded and
    unpacked into ``cache``.
    """
    if choice is None:
        kernels = installed_kernels()
        if not kernels:
            raise TestbedError(
                "no guest kernel with IPVS in /boot: install linux-image-amd64 "
                "(scripts/install.sh does)"
            )
        return kernels[0]
    if choice.startswith("pinned:"):
        return fetch_pinned(choice.removeprefix("pinned:"), cache=cache)
    path = Path(choice)
    if is_build_tree(path):
        return from_build_tree(path)
    if "/" in choice or path.exists():
        if not path.is_file():
            raise TestbedError(f"kernel image {choice} does not exist")
        return from_vmlinuz(path.resolve(), origin="path")
    for kernel in installed_kernels():
        if kernel.version == choice or kernel.version.startswith(choice + "."):
            return kernel
    return fetch_kernel(choice, cache=cache)
