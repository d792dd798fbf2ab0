"""Suite profiles: which conformance tests a run selects, declared as data.

A profile is a list of node-id patterns in conformance/profiles.toml (``*``
matches any run of characters; brackets are literal, so a parametrized id is
written as pytest prints it) and the sizes it runs at. ``full`` selects
every test at full size; ``smoke`` exercises every capability once::

    >>> from testbed.registry import load_profiles
    >>> smoke = load_profiles()["smoke"]
    >>> smoke.selects("conformance/test_failover.py::test_vip_moves_to_backup[v3-0.3s-kill]")
    True
    >>> load_profiles()["full"].selects("conformance/anything.py::test")
    True
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..util import REPO, TestbedError
from ._registry import Registry

PROFILES_FILE = REPO / "conformance" / "profiles.toml"
SCALE_CONNECTIONS = 20_000  # the full profile's simultaneous connections


def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")) + r"\Z")


@dataclass(frozen=True)
class Profile:
    """A selection of the conformance suite and the sizes it runs at."""

    name: str
    about: str
    tests: tuple[str, ...] = ()  # node-id patterns; none: every test
    scale_connections: int = SCALE_CONNECTIONS

    def __post_init__(self) -> None:
        if self.scale_connections < 1:
            raise TestbedError(f"profile {self.name}: scale_connections must be positive")

    def selects(self, nodeid: str) -> bool:
        return not self.tests or any(_pattern(p).match(nodeid) for p in self.tests)

    def selects_from(self, module: str) -> bool:
        """Whether any of its patterns can select a test of ``module`` (a path such as
        conformance/test_labs.py)."""
        return not self.tests or any(_pattern(p.split("::")[0]).match(module) for p in self.tests)

    def unmatched(self, nodeids: Iterable[str]) -> list[str]:
        """Patterns that select none of ``nodeids`` (a renamed test leaves one stale)."""
        ids = list(nodeids)
        return [p for p in self.tests if not any(_pattern(p).match(i) for i in ids)]


def load_profiles(path: Path = PROFILES_FILE) -> Registry[Profile]:
    """``full`` and the profiles declared in ``path``; a malformed one fails in one line."""
    profiles: Registry[Profile] = Registry("profile")
    profiles.register(Profile("full", "every test at full size"))
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TestbedError(f"profiles {path}: {exc}") from None
    for name, raw in data.get("profile", {}).items():
        try:
            profiles.register(Profile(name, raw["about"], tuple(raw["tests"]),
                                      raw.get("scale_connections", SCALE_CONNECTIONS)))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise TestbedError(f"profiles {path}: profile {name!r}: missing or bad {exc}") from None
    return profiles
