"""Fetch another Debian release's kernel without installing it.

apt runs with a private configuration (sources, lists, cache and an empty
dpkg status under ``.cache/kernels/apt-<release>``), pointed at the mirror the
host's own apt sources use. The kernel package is downloaded and unpacked
with ``dpkg-deb -x``; ``depmod`` indexes its modules in place. Newer
releases split the kernel into linux-binary-* (vmlinuz) and linux-modules-*
packages; both layouts are handled.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..util import REPO, TestbedError
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


def _install(debs: list[Path], root: Path, version: str) -> None:
    """Unpack a kernel's packages into ``root`` and index its modules."""
    _unpack(debs, root)
    subprocess.run(["depmod", "-b", str(root), version], check=True, capture_output=True)
    (root / ".complete").touch()


def _kernel_parts(apt: _PrivateApt, image: str) -> list[str]:
    """The image package and the packages holding its vmlinuz and modules."""
    return [image] + [
        d for d in apt.depends(image) if re.match(r"^linux-(binary|modules|base)-\d", d)
    ]


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
            parts = _kernel_parts(apt, image)
            _say(f"downloading {' '.join(parts)}")
            _install(apt.download(parts), root, version)
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.write_text(version)
        return kernel_from_tree(root, origin=f"Debian {release}")
    raise TestbedError(f"no Debian kernel package found for {choice!r} in {', '.join(releases)}")


# -- pins: what CI boots for a release name --------------------------------------------------

PINS = REPO / "conformance" / "kernel-pins.toml"


@dataclass(frozen=True)
class Pin:
    """A release's kernel as recorded: its packages' versions and .deb checksums."""

    release: str
    version: str  # the kernel's release string (uname -r)
    packages: dict[str, str]  # package -> version
    sha256: dict[str, str]  # package -> its .deb's sha256


def load_pins(path: Path = PINS) -> dict[str, Pin]:
    try:
        data = tomllib.loads(path.read_text()) if path.exists() else {}
        return {release: Pin(release, raw["version"], dict(raw["packages"]), dict(raw["sha256"]))
                for release, raw in data.items()}  # fmt: skip
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise TestbedError(f"kernel pins {path}: {exc}") from None


def _deb_fields(deb: Path) -> tuple[str, str]:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    fields = dict(re.findall(r"^(\w+): (.*)$", out, re.M))
    return fields["Package"], fields["Version"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_pinned(release: str, *, cache: Path, pins: Path = PINS) -> GuestKernel:
    """The kernel recorded for ``release`` (``--kernel pinned:sid``), checksums verified;
    one line if the mirror no longer has it (time to record a new pin)."""
    pinned = load_pins(pins)
    if release not in pinned:
        known = ", ".join(pinned) or "none"
        raise TestbedError(
            f"no kernel pinned for {release!r} in {pins.name} (pinned: {known}; "
            f"record one with lvs-testbed pin {release})"
        )
    pin = pinned[release]
    root = cache / pin.version
    stamp = json.dumps(pin.sha256, sort_keys=True)
    if (
        (root / ".complete").exists()
        and (root / ".pin").exists()
        and ((root / ".pin").read_text() == stamp)
    ):
        return kernel_from_tree(root, origin=f"Debian {release}, pinned")
    apt = _PrivateApt(cache / f"apt-{release}", host_mirror(), release)
    _say(f"looking up the pinned {release} kernel {pin.version}")
    apt.update()
    try:
        debs = apt.download([f"{p}={v}" for p, v in pin.packages.items()])
    except TestbedError as exc:
        raise TestbedError(
            f"the pinned {release} kernel {pin.version} is not on the mirror any more "
            f"({exc}): record a new pin with lvs-testbed pin {release}"
        ) from None
    for deb in debs:
        package, _version = _deb_fields(deb)
        if _sha256(deb) != pin.sha256.get(package):
            raise TestbedError(f"pinned {release} kernel: {deb.name} does not match its "
                               f"recorded sha256 in {pins.name}")  # fmt: skip
    _install(debs, root, pin.version)
    (root / ".pin").write_text(stamp)
    return kernel_from_tree(root, origin=f"Debian {release}, pinned")


def pin_release(release: str, *, cache: Path, pins: Path = PINS) -> Pin:
    """Record ``release``'s newest kernel (its versions and checksums) in ``pins``."""
    if not re.match(r"^[a-z]+$", release):
        raise TestbedError(f"pin takes a Debian release name, not {release!r}")
    apt = _PrivateApt(cache / f"apt-{release}", host_mirror(), release)
    _say(f"looking up the {release} kernel")
    apt.update()
    image = _image_package(apt, release)
    if image is None:
        raise TestbedError(f"no kernel package found in {release}")
    debs = apt.download(_kernel_parts(apt, image))
    fields = {deb: _deb_fields(deb) for deb in debs}
    pin = Pin(release, image.removeprefix("linux-image-"),
              {p: v for p, v in fields.values()},
              {p: _sha256(deb) for deb, (p, _v) in fields.items()})  # fmt: skip
    pinned = {**load_pins(pins), release: pin}
    pins.write_text(_render_pins(pinned))
    return pin


def _render_pins(pinned: dict[str, Pin]) -> str:
    lines = [
        "# What `--kernel pinned:RELEASE` boots (CI's matrix): each release's kernel packages",
        "# and the sha256 of their .debs. A release name alone (`--kernel sid`) takes the",
        "# newest; a pin changes only deliberately: `lvs-testbed pin RELEASE`, then commit.",
    ]

    def table(values: dict[str, str]) -> str:
        return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in sorted(values.items())) + " }"

    for release, pin in sorted(pinned.items()):
        lines += ["", f"[{release}]", f'version = "{pin.version}"',
                  f"packages = {table(pin.packages)}", f"sha256 = {table(pin.sha256)}"]  # fmt: skip
    return "\n".join(lines) + "\n"
