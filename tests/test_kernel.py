"""Guest kernel selection from /boot-like trees and paths (no guest booted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.guest import from_vmlinuz, installed_kernels, kernel_from_tree, resolve_kernel


def _kernel_tree(root: Path, version: str, *, ipvs: bool = True) -> Path:
    boot = root / "boot"
    boot.mkdir(parents=True, exist_ok=True)
    image = boot / f"vmlinuz-{version}"
    image.write_bytes(b"\0")
    mods = root / "lib" / "modules" / version / "kernel" / "net" / "netfilter"
    (mods / "ipvs" if ipvs else mods).mkdir(parents=True)
    return image


def test_unpacked_package_pairs_image_with_its_modules(tmp_path: Path) -> None:
    image = _kernel_tree(tmp_path, "6.12.9+deb13-amd64")
    kernel = from_vmlinuz(image, origin="path")
    assert kernel.version == "6.12.9+deb13-amd64"
    assert kernel.modules_dir == tmp_path / "lib" / "modules" / "6.12.9+deb13-amd64"


def test_merged_usr_layout_of_newer_packages(tmp_path: Path) -> None:
    mods = tmp_path / "usr" / "lib" / "modules" / "7.2.13+deb14-amd64"
    (mods / "kernel" / "net" / "netfilter" / "ipvs").mkdir(parents=True)
    (mods / "vmlinuz").write_bytes(b"\0")
    kernel = kernel_from_tree(tmp_path, origin="Debian sid")
    assert (kernel.version, kernel.modules_dir) == ("7.2.13+deb14-amd64", mods)


def test_kernel_without_ipvs_is_refused_with_one_line(tmp_path: Path) -> None:
    image = _kernel_tree(tmp_path, "6.6.0-custom", ipvs=False)
    with pytest.raises(TestbedError, match=r"kernel 6\.6\.0-custom lacks IPVS modules"):
        from_vmlinuz(image, origin="path")


def test_newest_installed_kernel_first(tmp_path: Path) -> None:
    for v in ("6.1.0-9-amd64", "6.1.0-56-amd64", "5.10.0-30-amd64"):
        _kernel_tree(tmp_path, v)
    assert [k.version for k in installed_kernels(tmp_path / "boot")] == [
        "6.1.0-56-amd64", "6.1.0-9-amd64", "5.10.0-30-amd64",
    ]  # fmt: skip


def test_missing_or_misnamed_image(tmp_path: Path) -> None:
    with pytest.raises(TestbedError, match="does not exist"):
        resolve_kernel(str(tmp_path / "vmlinuz-9"), cache=tmp_path)
    odd = tmp_path / "bzImage"
    odd.write_bytes(b"\0")
    with pytest.raises(TestbedError, match="name must be vmlinuz-<version>"):
        resolve_kernel(str(odd), cache=tmp_path)
    lonely = tmp_path / "vmlinuz-9.9.9"
    lonely.write_bytes(b"\0")
    with pytest.raises(TestbedError, match="no modules directory"):
        resolve_kernel(str(lonely), cache=tmp_path)


def test_the_ledger_loads_and_a_malformed_entry_is_one_line(tmp_path: Path) -> None:
    import pytest

    from testbed import TestbedError
    from testbed.kernel import load_ledger

    entries = load_ledger()
    assert entries and all(e.tests and e.source for e in entries)
    assert entries[0].covers("conformance/test_schedulers.py::test_twos_distribution_within_bounds")
    bad = tmp_path / "ledger.toml"
    bad.write_text(
        '[[entry]]\nname = "x"\nbehaviour = "y"\nprobe = { version = "6.2" }\ntests = ["*"]\n'
        'present = "passed"\nabsent = "skipped"\nsource = "z"\n'
    )
    with pytest.raises(TestbedError, match="unknown probe 'version'"):
        load_ledger(bad)
    bad.write_text('[[entry]]\nname = "x"\n')
    with pytest.raises(TestbedError, match="entry 'x': missing or malformed"):
        load_ledger(bad)
