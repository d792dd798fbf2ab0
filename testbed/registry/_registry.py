"""A registry: the entries of one kind (modes, protocols, ...) by name, in declaration order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from ..util import TestbedError


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


class UnknownEntry(TestbedError, KeyError):
    """A name no entry has: one line for the user, a KeyError for Mapping code."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries of one kind, each registered once by its name.

    >>> MODES["nat"].title
    'NAT'
    >>> list(MODES)
    ['nat', 'dr', 'tun']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownEntry(
                f"unknown {self.kind} {name!r} (choose from {', '.join(self._entries)})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def values(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def first_per(self, key: Callable[[T], object]) -> tuple[T, ...]:
        """The first entry (in declaration order) for each distinct ``key(entry)``: one
        representative per behaviour, e.g. one mode per connection-state table."""
        seen: dict[object, T] = {}
        for entry in self._entries.values():
            seen.setdefault(key(entry), entry)
        return tuple(seen.values())

    def select(self, names: str | None) -> tuple[T, ...]:
        """Entries named in a comma-separated list (every entry for None or "")."""
        if not names:
            return self.values()
        return tuple(self[n.strip().lower()] for n in names.split(",") if n.strip())

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
