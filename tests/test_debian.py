"""Finding the host's Debian mirror in its apt sources (both formats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.guest import fetch_kernel, host_mirror

MIRROR = "http://mirror.example/debian"


def test_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        f"Types: deb\nURIs: {MIRROR}/\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert host_mirror(tmp_path) == MIRROR


def test_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://security.example/x bookworm-security main\n"
        f"deb {MIRROR} bookworm main contrib\n"
    )
    assert host_mirror(tmp_path) == MIRROR


def test_disabled_entries_are_ignored(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "x.sources").write_text(f"Enabled: no\nTypes: deb\nURIs: {MIRROR}\nSuites: bookworm\n")
    with pytest.raises(TestbedError, match="no Debian mirror"):
        host_mirror(tmp_path)


def test_nonsense_kernel_choice_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TestbedError, match="unknown kernel 'Trixie!'"):
        fetch_kernel("Trixie!", cache=tmp_path)


def test_pins_are_recorded_and_read_back(tmp_path: Path) -> None:
    from testbed.guest import load_pins
    from testbed.guest._debian import Pin, _render_pins

    pin = Pin("sid", "7.2.13+deb14-amd64", {"linux-image-7.2.13+deb14-amd64": "7.2.13-1"},
              {"linux-image-7.2.13+deb14-amd64": "ab" * 32})  # fmt: skip
    path = tmp_path / "pins.toml"
    path.write_text(_render_pins({"sid": pin}))
    assert load_pins(path) == {"sid": pin}
    assert set(load_pins()) >= {"trixie", "sid"}  # what CI's matrix boots


def test_an_unpinned_release_is_one_line(tmp_path: Path) -> None:
    from testbed.guest import resolve_kernel

    with pytest.raises(TestbedError, match=r"no kernel pinned for 'bookworm'.*lvs-testbed pin"):
        resolve_kernel("pinned:bookworm", cache=tmp_path)
