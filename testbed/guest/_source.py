"""A kernel a developer built: the build tree, booted as virtme-ng boots one.

``--kernel /path/to/linux`` names a built tree (the source tree, or the
``O=``/KBUILD_OUTPUT directory of an out-of-tree build): its
``arch/x86/boot/bzImage``, ``.config`` and in-tree modules (``modules.order``;
vng installs them into the tree's ``.virtme_mods`` on first boot). Its
``.config`` must have what the suite exercises; what it lacks is named in
one line, with the fragment that supplies it::

    vng --kconfig && scripts/kconfig/merge_config.sh .config \\
        $LVS/conformance/kernel.config [$LVS/conformance/kernel-debug.config]
    make -j$(nproc) && lvs-testbed run --kernel . --profile smoke

Options the suite can do without (a test skips, naming the module) are
listed as optional in the fragment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..util import REPO, TestbedError
from ._image import GuestKernel

FRAGMENT = REPO / "conformance" / "kernel.config"
IMAGE = Path("arch/x86/boot/bzImage")


@dataclass(frozen=True)
class Fragment:
    """conformance/kernel.config: options (CONFIG_X -> y or m), which are optional, and
    which module each builds (``# module NAME; optional: why`` after an option)."""

    options: dict[str, str]
    optional: frozenset[str]
    modules: dict[str, str]  # module -> its option

    def option_for(self, module: str) -> str:
        if module not in self.modules:
            raise TestbedError(f"{FRAGMENT.name}: no option is marked as building {module}")
        return self.modules[module]


def read_fragment(path: Path = FRAGMENT) -> Fragment:
    options: dict[str, str] = {}
    optional: set[str] = set()
    modules: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(CONFIG_\w+)=([ym])\s*(?:#(.*))?$", line)
        if not m:
            continue
        options[m[1]] = m[2]
        for note in (n.strip() for n in (m[3] or "").split(";")):
            if note.startswith("module "):
                modules[note.removeprefix("module ").strip()] = m[1]
            elif note.startswith("optional"):
                optional.add(m[1])
    return Fragment(options, frozenset(optional), modules)


def config_of(tree: Path) -> dict[str, str]:
    """A tree's .config's set options (CONFIG_X -> value)."""
    return config_text((tree / ".config").read_text())


def config_text(text: str) -> dict[str, str]:
    """A kernel config's set options (CONFIG_X -> value)."""
    found = dict(re.findall(r'^(CONFIG_\w+)=("[^"]*"|\S*)', text, re.M))
    return {k: v.strip('"') for k, v in found.items()}


def missing_options(
    config: dict[str, str], fragment: Path = FRAGMENT
) -> tuple[list[str], list[str]]:
    """(required, optional) fragment options the config does not set to y or m."""
    wanted = read_fragment(fragment)
    absent = [o for o in wanted.options if config.get(o) not in ("y", "m")]
    return ([o for o in absent if o not in wanted.optional],
            [o for o in absent if o in wanted.optional])  # fmt: skip


def is_build_tree(path: Path) -> bool:
    return path.is_dir() and (path / ".config").is_file() and (path / "Makefile").is_file()


def from_build_tree(tree: Path) -> GuestKernel:
    """The kernel built in ``tree``; one line naming what is missing if it cannot serve."""
    tree = tree.resolve()
    if not (tree / IMAGE).is_file():
        raise TestbedError(f"kernel tree {tree}: no {IMAGE}: build it first (make or vng --build)")
    required, _optional = missing_options(config_of(tree))
    if required:
        raise TestbedError(
            f"kernel tree {tree}: .config lacks {', '.join(required)} "
            f"(merge {FRAGMENT.relative_to(REPO)} into it and rebuild)"
        )
    release = tree / "include" / "config" / "kernel.release"
    version = release.read_text().strip() if release.is_file() else "unknown"
    return GuestKernel(version=version, vmlinuz=tree / IMAGE, modules_dir=tree,
                       origin=f"built tree {tree}", tree=tree)  # fmt: skip
