"""EUBO over the epistemic model's draws: the value it scores pairs by, the pairs
it picks, batches and lists."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.strategies import SelectionInput
from activelearn.strategies.eubo import EuboStrategy, expected_best


def test_expected_best_is_the_mean_of_the_larger_of_two_gaussian_utilities() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    draws = rng.multivariate_normal([0.2, 0.5], cov, size=400_000)
    spread = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    value = expected_best(np.array([0.2]), np.array([0.5]), np.array([spread]))[0]
    assert value == pytest.approx(draws.max(axis=1).mean(), abs=0.005)
    assert value > 0.5, "a chance that the first is the better one is worth something"
    # Perfectly correlated (no spread in the difference): the larger mean.
    assert expected_best(np.array([1.0]), np.array([2.0]), np.array([0.0]))[0] == 2.0


def test_it_asks_the_leader_against_the_challenger_that_could_beat_it() -> None:
    """Item 0 is surely good; item 1 a little worse on average but uncertain;
    item 2 as good on average as item 1 but known, so asking about it teaches
    nothing; item 3 surely bad."""
    rng = np.random.default_rng(1)
    m = 64
    members = np.column_stack(
        [
            1.0 + rng.normal(scale=0.05, size=m),
            0.8 + rng.normal(scale=1.0, size=m),
            0.8 + rng.normal(scale=0.05, size=m),
            -2.0 + rng.normal(scale=0.05, size=m),
        ]
    )
    inp = SelectionInput(groups=np.zeros(4, dtype=np.int64), member_scores=members)
    pick = EuboStrategy().select(inp, 1, np.random.default_rng(0))[0]
    assert (pick.i, pick.j) == (0, 1)
    assert pick.score > 0 and pick.propensity == 1.0


def test_a_batch_spreads_over_items_and_skips_asked_pairs() -> None:
    rng = np.random.default_rng(2)
    members = np.linspace(1.0, -1.0, 8) + rng.normal(scale=0.5, size=(32, 8))
    inp = SelectionInput(groups=np.zeros(8, dtype=np.int64), member_scores=members, excluded=frozenset({(0, 1)}))
    picks = EuboStrategy(max_per_item=2).select(inp, 6, np.random.default_rng(0))
    pairs = [(p.i, p.j) for p in picks]
    assert len(pairs) == 6 and len(set(pairs)) == 6 and (0, 1) not in pairs
    uses = np.bincount(np.array(pairs).ravel(), minlength=8)
    assert uses.max() <= 2
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)


def test_groups_are_compared_by_gain_not_by_their_utility_level() -> None:
    """Group 1's utilities are all 10 higher, but only group 0 is uncertain:
    the first pair asked is group 0's."""
    rng = np.random.default_rng(3)
    certain = 10.0 + np.linspace(0.0, -1.0, 4) + rng.normal(scale=0.01, size=(32, 4))
    unsure = np.linspace(0.0, -0.5, 4) + rng.normal(scale=1.0, size=(32, 4))
    inp = SelectionInput(groups=np.repeat([0, 1], 4), member_scores=np.hstack([unsure, certain]))
    first = EuboStrategy().select(inp, 1, np.random.default_rng(0))[0]
    assert first.i < 4 and first.j < 4


def test_a_list_grows_by_the_item_that_most_raises_the_expected_best() -> None:
    rng = np.random.default_rng(4)
    members = np.column_stack(
        [
            1.0 + rng.normal(scale=0.05, size=64),  # the leader
            0.9 + rng.normal(scale=1.0, size=64),  # could beat it
            0.8 + rng.normal(scale=1.0, size=64),  # could too
            0.9 + rng.normal(scale=0.05, size=64),  # known to be a little worse: adds nothing
            -3.0 + rng.normal(scale=0.05, size=64),
        ]
    )
    inp = SelectionInput(groups=np.zeros(5, dtype=np.int64), member_scores=members)
    found = EuboStrategy().select_list(inp, np.arange(5), 3, np.random.default_rng(0))
    assert found is not None and sorted(found.items) == [0, 1, 2]
    assert found.score > 0


def test_a_list_longer_than_top_k_is_still_filled() -> None:
    rng = np.random.default_rng(6)
    members = rng.normal(size=(16, 12))
    inp = SelectionInput(groups=np.zeros(12, dtype=np.int64), member_scores=members)
    found = EuboStrategy(top_k=4).select_list(inp, np.arange(12), 6, np.random.default_rng(0))
    assert found is not None and len(set(found.items)) == 6


def test_top_k_bounds_the_pairs_scored_in_a_large_group() -> None:
    rng = np.random.default_rng(5)
    members = rng.normal(size=(16, 2000))
    members[:, 7] += 5.0  # the clear leader is among the optimistic few
    inp = SelectionInput(groups=np.zeros(2000, dtype=np.int64), member_scores=members)
    picks = EuboStrategy(top_k=8).select(inp, 40, np.random.default_rng(0))
    items = {x for p in picks for x in (p.i, p.j)}
    assert len(picks) <= 8 * 7 // 2 and 7 in items and len(items) <= 8


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="top_k"):
        EuboStrategy(top_k=1)
