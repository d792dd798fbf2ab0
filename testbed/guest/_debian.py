"""Fetch another Debian release's kernel without installing it.

apt runs with a private configuration (sources, lists, cache and an empty
dpkg status under ``.cache/kernels/apt-<release>``), pointed at the mirror the
host's own apt sources use. The kernel package is downloaded and unpacked
with ``dpkg-deb -x``; ``depmod`` indexes its modules in place. Newer
releases split the kernel into linux-binary-* (vmlinuz) and linux-modules-*
packages; both layouts are handled.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from ..util import TestbedError
from ._image import GuestKernel, kernel_from_tree

RELEASES = ("trixie", "forky", "sid")  # searched in this order for a version prefix
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_REUSE_SECONDS = 7 * 24 * 3600


def _say(msg: str) -> None:
    print(f"[kernel] {msg}", flush=True)


def host_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI the host's apt sources use (deb822 or one-line)."""
    candidates: list[tuple[str, list[str]]] = []
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", f.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, re.M))
            if (
                fields.get("Enabled", "yes").lower() == "no"
                or "deb" not in fields.get("Types", "").split()
            ):
                continue
            for uri in fields.get("URIs", "").split():
                candidates.append((uri, fields.get("Suites", "").split()))
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if m:
                candidates.append((m[1], [m[2]]))
    for uri, suites in candidates:
        if any(not re.search(r"-(security|updates|backports)$", s) for s in suites) and (
            "security" not in uri
        ):
            return uri.rstrip("/")
    raise TestbedError(
        "no Debian mirror found in the host's apt sources: pass --kernel /path/to/vmlinuz-<ver>"
    )


class _PrivateApt:
    def __init__(self, root: Path, mirror: str, release: str) -> None:
        root = root.resolve()  # apt reads relative Dir:: paths under /etc/apt
        self.root = root
        for d in ("lists/partial", "cache/archives/partial", "state", "parts", "debs"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "state" / "status").touch()
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        (root / "sources.list").write_text(f"deb {signed}{mirror} {release} main\n")
        self.options = [
            f"Dir::Etc::sourcelist={root / 'sources.list'}",
            f"Dir::Etc::sourceparts={root / 'parts'}",
            "Dir::Etc::preferences=/dev/null",
            f"Dir::Etc::preferencesparts={root / 'parts'}",
            f"Dir::State::Lists={root / 'lists'}",
            f"Dir::State::status={root / 'state' / 'status'}",
            f"Dir::Cache={root / 'cache'}",
            "APT::Architecture=amd64",
            "Acquire::Languages=none",
            "APT::Sandbox::User=root",
            # a release's Release file may be past Valid-Until on an old mirror
            "Acquire::Check-Valid-Until=false",
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool]
        for opt in self.options:
            cmd += ["-o", opt]
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise TestbedError(f"{tool} {' '.join(args)} failed: {last}")
        return done.stdout

    def update(self) -> None:
        self._run("apt-get", "update", "-qq")

    def package_names(self, prefix: str) -> list[str]:
        return self._run("apt-cache", "pkgnames", prefix).split()

    def depends(self, package: str) -> list[str]:
        out = self._run("apt-cache", "depends", "--no-recommends", "--no-suggests", package)
        return [m for m in re.findall(r"Depends:\s*<?([\w.+-]+)>?", out)]

    def download(self, packages: list[str]) -> list[Path]:
        debs = self.root / "debs"
        for old in debs.glob("*.deb"):
            old.unlink()
        self._run("apt-get", "download", "-qq", *packages, cwd=debs)
        return sorted(debs.glob("*.deb"))


def _image_package(apt: _PrivateApt, choice: str) -> str | None:
    """The versioned linux-image package for a release name or version prefix."""
    if re.match(r"^\d", choice):
        names = [
            n
            for n in apt.package_names(f"linux-image-{choice}")
            if re.match(rf"^linux-image-{re.escape(choice)}[.\d]*[+-].*-amd64$", n)
            and "unsigned" not in n and "dbg" not in n
        ]  # fmt: skip
        names.sort(key=lambda n: [int(x) for x in re.findall(r"\d+", n)])
        return names[-1] if names else None
    deps = [d for d in apt.depends("linux-image-amd64") if d.startswith("linux-image-")]
    return deps[0] if deps else None


def _unpack(debs: list[Path], root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # depmod -b ROOT looks in ROOT/lib/modules; merged-/usr packages use usr/lib
    if not (root / "lib").exists() and (root / "usr" / "lib" / "modules").is_dir():
        (root / "lib").symlink_to("usr/lib")


def fetch_kernel(choice: str, *, cache: Path) -> GuestKernel:
    """Download and unpack the kernel for ``choice`` (a release or a version prefix)."""
    if not re.match(r"^[a-z]+$|^\d+(\.\d+)*$", choice):
        raise TestbedError(
            f"unknown kernel {choice!r}: give a vmlinuz path, an installed version, "
            f"a Debian release ({', '.join(RELEASES)}) or a version such as 6.12"
        )
    alias = cache / "aliases" / choice
    if alias.exists() and time.time() - alias.stat().st_mtime < _REUSE_SECONDS:
        root = cache / alias.read_text().strip()
        if (root / ".complete").exists():
            return kernel_from_tree(root, origin=f"Debian {choice} (cached)")
    releases = [choice] if not choice[0].isdigit() else list(RELEASES)
    mirror = host_mirror()
    for release in releases:
        apt = _PrivateApt(cache / f"apt-{release}", mirror, release)
        _say(f"looking up the {release} kernel")
        apt.update()
        image = _image_package(apt, choice)
        if image is None:
            continue
        version = image.removeprefix("linux-image-")
        root = cache / version
        if not (root / ".complete").exists():
            parts = [image] + [
                d for d in apt.depends(image) if re.match(r"^linux-(binary|modules|base)-\d", d)
            ]
            _say(f"downloading {' '.join(parts)}")
            _unpack(apt.download(parts), root)
            subprocess.run(["depmod", "-b", str(root), version], check=True, capture_output=True)
            (root / ".complete").touch()
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.write_text(version)
        return kernel_from_tree(root, origin=f"Debian {release}")
    raise TestbedError(f"no Debian kernel package found for {choice!r} in {', '.join(releases)}")
