"""Strategies are pure: arrays in, scored pairs out."""

import numpy as np
import pytest

from activelearn.strategies import SelectionInput, StrategyName, get_strategy


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


def test_unknown_strategy_names_the_known_ones():
    known = "known strategies: random, least_compared, uncertainty, apohf, double_ts, infomax"
    with pytest.raises(ValueError, match=known):
        get_strategy("apohf-typo")
