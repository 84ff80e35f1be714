"""The registries' common part: lookup, order and registration."""

from __future__ import annotations

import pytest

from models_runtime.catalogue import Catalogue


def _catalogue() -> Catalogue[tuple[str, int]]:
    return Catalogue(
        [("a", 1), ("b", 2)],
        key=lambda entry: entry[0],
        called="a thing",
        missing=lambda key, known: LookupError(f"no thing {key!r}; known: {', '.join(known)}"),
    )


def test_entries_keep_their_order_and_are_found_by_key() -> None:
    things = _catalogue()
    assert things.keys() == ["a", "b"]
    assert things.entries() == [("a", 1), ("b", 2)]
    assert things.get("b") == ("b", 2) and things.find("b") == ("b", 2)


def test_an_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(LookupError, match=r"no thing 'z'; known: a, b"):
        _catalogue().get("z")
    assert _catalogue().find("z") is None


def test_a_key_is_registered_once() -> None:
    with pytest.raises(ValueError, match="a thing called 'a' is already registered"):
        Catalogue([("a", 1), ("a", 2)], key=lambda e: e[0], called="a thing", missing=lambda k, n: KeyError(k))


def test_an_entry_registered_for_a_block_is_gone_after_it() -> None:
    things = _catalogue()
    with things.registered(("c", 3)):
        assert things.keys() == ["a", "b", "c"]
    assert things.keys() == ["a", "b"]
    things.register(("c", 3))
    assert things.get("c") == ("c", 3)
