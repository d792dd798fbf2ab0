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
