"""Guest kernel selection from /boot-like trees and paths (no guest booted)."""

from __future__ import annotations

import contextlib
import itertools
import re
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


def _tree(root: Path, config: str, *, built: bool = True) -> Path:
    (root / "include" / "config").mkdir(parents=True)
    (root / "Makefile").write_text("# kernel\n")
    (root / ".config").write_text(config)
    (root / "include" / "config" / "kernel.release").write_text("6.13.0-rc1+\n")
    if built:
        (root / "arch" / "x86" / "boot").mkdir(parents=True)
        (root / "arch" / "x86" / "boot" / "bzImage").write_bytes(b"\0")
    return root


def test_a_built_tree_boots_with_its_own_modules(tmp_path: Path) -> None:
    from testbed.guest._source import FRAGMENT
    from testbed.guest._vm import GuestOptions, vng_command

    tree = _tree(tmp_path / "linux", FRAGMENT.read_text().replace("CONFIG_IP_VS_TWOS=m", "#"))
    kernel = resolve_kernel(str(tree), cache=tmp_path)
    assert kernel.version == "6.13.0-rc1+" and kernel.tree == tree  # twos is optional
    cmd = vng_command(GuestOptions(kernel=kernel, checkout=tmp_path, emulation="tcg"), ["run"])
    assert "--run" not in cmd  # vng finds the image and modules through KBUILD_OUTPUT


@pytest.mark.parametrize(
    ("config", "built", "message"),
    [
        ("CONFIG_IP_VS=m\n", True, "lacks CONFIG_IP_VS_IPV6, CONFIG_IP_VS_PROTO_TCP"),
        ("# CONFIG_IP_VS is not set\n", True, "lacks CONFIG_IP_VS, "),
        ("CONFIG_IP_VS=m\n", False, "no arch/x86/boot/bzImage: build it first"),
    ],
)
def test_a_tree_that_cannot_serve_is_one_line(
    tmp_path: Path, config: str, built: bool, message: str
) -> None:
    with pytest.raises(TestbedError, match=re.escape(message)):
        resolve_kernel(str(_tree(tmp_path / "linux", config, built=built)), cache=tmp_path)


def test_the_config_fragment_covers_every_module_the_registry_uses() -> None:
    from testbed.guest._source import read_fragment
    from testbed.registry import (
        FAMILIES,
        MODES,
        PERSISTENCE_ENGINES,
        PROTOCOLS,
        SCHEDULERS,
        TUNNEL_CHECKSUMS,
        TUNNELS,
    )  # fmt: skip

    modules = {SCHEDULERS[s].module for s in SCHEDULERS}
    modules |= {m for name in MODES for m in MODES[name].modules}
    modules |= {m for name in PROTOCOLS for m in PROTOCOLS[name].modules}
    modules |= {PERSISTENCE_ENGINES[e].module for e in PERSISTENCE_ENGINES}
    for t, a, b, c in itertools.product(TUNNELS, FAMILIES, FAMILIES, TUNNEL_CHECKSUMS):
        with contextlib.suppress(Exception):  # a tunnel that cannot carry that family
            modules |= set(TUNNELS[t].modules(FAMILIES[a], FAMILIES[b], TUNNEL_CHECKSUMS[c]))
    fragment = read_fragment()
    assert {fragment.option_for(m) for m in modules} <= set(fragment.options)
    assert fragment.optional == {"CONFIG_IP_VS_TWOS"}
    assert fragment.option_for("ip_vs_mh") == "CONFIG_IP_VS_MH"


def test_results_carry_the_kernels_ipvs_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    from testbed.report._results import _kernel_config

    config = tmp_path / "config.gz"
    config.write_bytes(
        gzip.compress(b"CONFIG_IP_VS=m\nCONFIG_IP_VS_RR=y\n# CONFIG_IP_VS_MH is not set\n")
    )
    monkeypatch.setenv("LVS_TESTBED_KERNEL_CONFIG", str(config))
    found = _kernel_config()
    assert found["CONFIG_IP_VS"] == "m" and found["CONFIG_IP_VS_RR"] == "y"
    assert found["CONFIG_IP_VS_MH"] == "n" and "CONFIG_NET_IPIP" in found
