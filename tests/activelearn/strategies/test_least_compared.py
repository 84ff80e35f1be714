"""Least-compared pairs: the judgments spread evenly over the items."""

from __future__ import annotations

import numpy as np

from activelearn.strategies import SelectionInput
from activelearn.strategies.least_compared import LeastComparedStrategy


def two_groups(size: int = 6) -> np.ndarray:
    return np.repeat([0, 1], size)


def test_least_compared_pairs_the_least_judged_items() -> None:
    groups = np.zeros(5, dtype=np.int64)
    counts = np.array([3, 0, 2, 0, 1])
    picks = LeastComparedStrategy().select(SelectionInput(groups=groups, counts=counts), 2, np.random.default_rng(0))
    assert (picks[0].i, picks[0].j) == (1, 3)
    # After (1, 3) both have one comparison; item 4 has one too: the next pair uses them.
    assert set((picks[1].i, picks[1].j)) <= {1, 3, 4} and (picks[1].i, picks[1].j) != (1, 3)


def test_least_compared_spreads_a_batch_and_respects_exclusions() -> None:
    groups = two_groups(4)
    excluded = frozenset({(0, 1), (4, 5)})
    picks = LeastComparedStrategy().select(
        SelectionInput(groups=groups, excluded=excluded), 4, np.random.default_rng(1)
    )
    pairs = [(p.i, p.j) for p in picks]
    assert len(pairs) == 4 == len(set(pairs))
    assert not set(pairs) & excluded
    # Every item is used once before any is used twice.
    used = np.bincount(np.ravel(pairs), minlength=8)
    assert used.max() == 1
    assert all(groups[i] == groups[j] for i, j in pairs)
