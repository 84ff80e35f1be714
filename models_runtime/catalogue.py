"""The registries' common part: named entries in a fixed order, extendable at run time.

Each extension point of prefloop (query strategies, reward-model kinds, import
formats, export kinds) keeps one catalogue of its entries; everything else is
derived from it. This is what they share: lookup by key with an error that
lists the known keys, and registration (a plug-in, or a test that registers an
entry for the length of a ``with`` block). Pure Python, so every layer may use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Catalogue"]

T = TypeVar("T")


class Catalogue(Generic[T]):
    """Entries keyed by ``key(entry)``, in registration order.

    ``called`` names one entry in messages ("a strategy", "an import format");
    ``missing(key, known_keys)`` builds the error :meth:`get` raises for an
    unknown key."""

    def __init__(
        self,
        entries: Iterable[T],
        *,
        key: Callable[[T], str],
        called: str,
        missing: Callable[[str, list[str]], Exception],
    ) -> None:
        self._key = key
        self._called = called
        self._missing = missing
        self._entries: dict[str, T] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: T) -> None:
        """Add ``entry``; its key must be new."""
        key = self._key(entry)
        if key in self._entries:
            raise ValueError(f"{self._called} called {key!r} is already registered")
        self._entries[key] = entry

    @contextlib.contextmanager
    def registered(self, entry: T) -> Iterator[T]:
        """``entry`` registered for the duration of a ``with`` block."""
        self.register(entry)
        try:
            yield entry
        finally:
            self._entries.pop(self._key(entry), None)

    def get(self, key: str) -> T:
        """The entry called ``key``; the catalogue's ``missing`` error otherwise."""
        try:
            return self._entries[str(key)]
        except KeyError:
            raise self._missing(str(key), self.keys()) from None

    def find(self, key: str) -> T | None:
        """The entry called ``key``, or None."""
        return self._entries.get(str(key))

    def keys(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[T]:
        return list(self._entries.values())
