"""Uncertainty sampling: the pairs whose predicted preference is closest to 50/50."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.strategies import SelectionInput, StrategyName, get_strategy


def _groups(n_groups: int, size: int) -> np.ndarray:
    return np.repeat(np.arange(n_groups), size)


def test_uncertainty_prefers_the_closest_scores_and_respects_exclusions():
    groups = np.zeros(6, dtype=int)
    scores = np.array([0.0, 0.05, 3.0, 6.0, 6.01, 9.0])
    strategy = get_strategy(StrategyName.UNCERTAINTY)
    picks = strategy.select(SelectionInput(groups=groups, scores=scores), 1, np.random.default_rng(0))
    assert (picks[0].i, picks[0].j) == (3, 4)
    assert picks[0].score == pytest.approx(1 - 2 * abs(1 / (1 + np.exp(-0.01)) - 0.5))

    picks = strategy.select(
        SelectionInput(groups=groups, scores=scores, excluded=frozenset({(3, 4)})), 1, np.random.default_rng(0)
    )
    assert (picks[0].i, picks[0].j) == (0, 1)


def test_uncertainty_spreads_a_batch_over_items_and_never_crosses_groups():
    rng = np.random.default_rng(3)
    groups = _groups(10, 6)
    scores = rng.normal(size=groups.size)
    picks = get_strategy("uncertainty").select(SelectionInput(groups=groups, scores=scores), 20, rng)
    assert len(picks) == 20
    items = [x for p in picks for x in (p.i, p.j)]
    assert len(items) == len(set(items)), "max_per_item=1: each item at most once per batch"
    assert all(groups[p.i] == groups[p.j] for p in picks)
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)


def test_uncertainty_without_a_model_is_an_error():
    with pytest.raises(ValueError, match="needs model scores"):
        get_strategy("uncertainty").select(SelectionInput(groups=_groups(2, 2)), 1, np.random.default_rng(0))
