"""Random pairs: the baseline and the cold start."""

from __future__ import annotations

import numpy as np

from activelearn.strategies import SelectionInput, get_strategy


def _groups(n_groups: int, size: int) -> np.ndarray:
    return np.repeat(np.arange(n_groups), size)


def test_random_pairs_stay_within_a_group_and_skip_excluded_pairs():
    groups = _groups(5, 4)
    excluded = frozenset({(0, 1), (4, 5)})
    picks = get_strategy("random").select(
        SelectionInput(groups=groups, excluded=excluded), 12, np.random.default_rng(0)
    )
    assert len(picks) == 12
    pairs = {(p.i, p.j) for p in picks}
    assert len(pairs) == 12, "a batch never repeats a pair"
    assert not pairs & excluded
    assert all(groups[p.i] == groups[p.j] and p.i < p.j for p in picks)


def test_random_exhausts_a_small_pool_exactly():
    groups = _groups(3, 3)  # 3 pairs per group, 9 in all
    picks = get_strategy("random").select(SelectionInput(groups=groups), 50, np.random.default_rng(1))
    assert sorted((p.i, p.j) for p in picks) == sorted(
        (a, b) for g in range(3) for a in range(3 * g, 3 * g + 3) for b in range(a + 1, 3 * g + 3)
    )
