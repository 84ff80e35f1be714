"""The one simulator: hidden utilities standardised per group, an annotator that answers
as its Bradley–Terry / Plackett–Luce model says, and normalised simple regret."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from models_runtime.simulate import (
    PreferenceOracle,
    hash_utilities,
    hidden_utility,
    mean_normalised_regret,
    normalised_regret,
    standardise_within_groups,
)


def _binomial_bound(p: float, n: int) -> float:
    """Four standard errors of a rate estimated from ``n`` draws."""
    return 4.0 * math.sqrt(p * (1.0 - p) / n)


def _assert_standardised_per_group(u: np.ndarray, groups: np.ndarray) -> None:
    for group in np.unique(groups):
        block = u[groups == group]
        assert abs(block.mean()) < 1e-9 and abs(block.std() - 1.0) < 1e-9


@pytest.mark.parametrize("family", ["linear", "mlp"])
def test_hidden_utilities_are_standardised(family: str) -> None:
    x = np.random.default_rng(0).standard_normal((200, 16))
    u = hidden_utility(x, family, np.random.default_rng(1))
    assert abs(u.mean()) < 1e-9 and abs(u.std() - 1.0) < 1e-9


@pytest.mark.parametrize("family", ["linear", "mlp"])
def test_hidden_utilities_with_groups_are_standardised_within_each_group(family: str) -> None:
    x = np.random.default_rng(0).standard_normal((90, 8))
    groups = np.repeat([3, 1, 2], 30)
    _assert_standardised_per_group(hidden_utility(x, family, np.random.default_rng(1), groups=groups), groups)


def test_an_unknown_utility_family_is_refused() -> None:
    with pytest.raises(ValueError, match="family"):
        hidden_utility(np.zeros((3, 2)), "cubic", np.random.default_rng(0))


def test_hash_utilities_are_standardised_per_group_and_fixed_by_seed_and_id() -> None:
    ids = np.arange(100, 140)
    groups = np.repeat([7, 8, 9, 10], 10)
    u = hash_utilities(ids, groups, seed=3)
    _assert_standardised_per_group(u, groups)
    np.testing.assert_array_equal(u, hash_utilities(ids, groups, seed=3))
    assert not np.allclose(u, hash_utilities(ids, groups, seed=4))
    # The same ids in another order get the same utilities: the draw is keyed by id.
    order = np.random.default_rng(0).permutation(40)
    np.testing.assert_allclose(hash_utilities(ids[order], groups[order], seed=3), u[order], rtol=1e-12)


def test_a_group_of_equal_values_standardises_to_zeros() -> None:
    out = standardise_within_groups(np.array([2.0, 2.0, 1.0, 3.0]), np.array([0, 0, 1, 1]))
    np.testing.assert_array_equal(out, [0.0, 0.0, -1.0, 1.0])


def test_pair_answers_follow_scale_flips_and_position_bias() -> None:
    """P(a ≻ b) = σ(s·(u_a − u_b) + bias) mixed with flips at rate ε; the rate of
    20,000 answers to the same pair on a fixed seed is within a binomial bound of it."""
    oracle = PreferenceOracle(np.array([0.5, 0.0]), scale=3.0, label_flip_rate=0.1, position_bias=0.2)
    n = 20_000
    a, b = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    p = 1.0 / (1.0 + np.exp(-(3.0 * 0.5 + 0.2)))
    expected = 0.9 * p + 0.1 * (1 - p)
    assert oracle.prob_first(a[:1], b[:1])[0] == pytest.approx(expected)
    rate = oracle.answer_pairs(a, b, np.random.default_rng(2)).mean()
    assert abs(rate - expected) < _binomial_bound(expected, n)


def test_one_question_at_a_time_answers_at_the_same_rate() -> None:
    """The app's annotators ask one question at a time from a ``random.Random``:
    same Bradley–Terry probability with flips, within a binomial bound on a fixed seed."""
    oracle = PreferenceOracle(np.array([0.0, 0.4]), scale=2.0, label_flip_rate=0.15, position_bias=-0.3)
    rng = random.Random("fixed")
    n = 20_000
    rate = np.mean([oracle.answer_pair(1, 0, rng) for _ in range(n)])
    expected = float(oracle.prob_first(np.array([1]), np.array([0]))[0])
    assert abs(rate - expected) < _binomial_bound(expected, n)


def test_one_question_draws_two_uniforms_whatever_the_flip_rate() -> None:
    """The stream after an answer does not depend on ε, so the annotator's thinking
    pauses (drawn from the same generator) are the same with or without flips."""
    utility = np.array([1.0, -1.0, 0.0])
    after = []
    for flip in (0.0, 0.3):
        rng = random.Random(5)
        for _ in range(10):
            PreferenceOracle(utility, label_flip_rate=flip).answer_pair(0, 2, rng)
        after.append(rng.random())
    assert after[0] == after[1]


def test_the_oracle_refuses_a_negative_scale_and_a_flip_rate_outside_0_1() -> None:
    with pytest.raises(ValueError, match="scale"):
        PreferenceOracle(np.zeros(2), scale=-1.0)
    with pytest.raises(ValueError, match="label_flip_rate"):
        PreferenceOracle(np.zeros(2), label_flip_rate=1.5)


def test_list_answers_put_the_best_item_first_most_often() -> None:
    oracle = PreferenceOracle(np.array([2.0, 0.0, -2.0]), scale=1.0)
    rng = np.random.default_rng(3)
    n = 2_000
    firsts = [oracle.answer_list(np.array([2, 0, 1]), rng)[0] for _ in range(n)]
    # Plackett–Luce: P(first = 0) = e² / (e² + 1 + e⁻²).
    expected = np.exp(2) / (np.exp(2) + 1 + np.exp(-2))
    assert abs(np.mean(np.array(firsts) == 0) - expected) < _binomial_bound(expected, n)


def test_regret_is_zero_for_the_best_item_and_one_for_an_average_one() -> None:
    utility = np.array([-1.0, 0.0, 1.0])  # mean 0
    assert normalised_regret(utility, 2) == 0.0
    assert normalised_regret(utility, 1) == 1.0
    assert normalised_regret(utility, 0) == 2.0


def test_mean_regret_averages_over_groups_and_skips_groups_without_a_choice() -> None:
    utility = np.array([-1.0, 0.0, 1.0, 5.0, 2.0, 2.0])
    groups = np.array([0, 0, 0, 1, 2, 2])  # group 1 has one item, group 2 equal utilities
    scores = np.array([0.0, 1.0, 0.0, 9.0, 1.0, 0.0])  # picks the middle item of group 0
    assert mean_normalised_regret(utility, groups, scores) == 1.0
    assert mean_normalised_regret(utility, groups, np.array([0, 0, 1, 0, 0, 0.0])) == 0.0
    assert mean_normalised_regret(utility, groups, None) == 1.0  # a random pick, in expectation
    assert math.isnan(mean_normalised_regret(utility[3:], groups[3:], None))
