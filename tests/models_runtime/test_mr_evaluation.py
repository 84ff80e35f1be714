"""Held-out scoring: intervals against scipy, what is counted, and how ties and rankings enter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models_runtime.evaluation import (
    decided_pairs,
    evaluation_draw,
    score_heldout,
    t_quantile_975,
    wilson_interval,
)
from models_runtime.preferences import LikelihoodConfig, PreferenceData


@pytest.mark.parametrize("df", [5, 10, 19, 50, 200, 5000])
def test_t_quantile_matches_scipy(df):
    assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-3)


@pytest.mark.parametrize(("successes", "n"), [(0, 20), (10, 20), (20, 20), (61, 100), (7.5, 13)])
def test_wilson_interval_matches_the_score_interval(successes, n):
    low, high = wilson_interval(successes, n)
    # The Wilson interval is where the score test does not reject: |p̂ − p| ≤ z·sqrt(p(1−p)/n).
    z = stats.norm.ppf(0.975)
    p_hat = successes / n
    for bound in (low, high):
        if 0.0 < bound < 1.0:
            assert abs(p_hat - bound) == pytest.approx(z * math.sqrt(bound * (1 - bound) / n), rel=1e-9)
    assert 0.0 <= low <= p_hat <= high <= 1.0


def test_evaluation_draws_are_stable_and_uniform():
    draws = np.array([evaluation_draw(f"7\x1f{i}-{i + 1}") for i in range(20_000)])
    assert evaluation_draw("7\x1f1-2") == evaluation_draw("7\x1f1-2")
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs((draws < 0.2).mean() - 0.2) < 0.01


def test_perfect_and_inverted_models_and_the_interval_width():
    n = 50
    left, right = np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2)
    data = PreferenceData.from_pairs(left, right, np.ones(n, dtype=np.float32))
    utility = np.zeros(2 * n)
    utility[left] = 2.0
    good = score_heldout(utility, data, np.arange(n))
    bad = score_heldout(-utility, data, np.arange(n))
    assert (good.n, good.accuracy, bad.accuracy) == (n, 1.0, 0.0)
    assert good.accuracy_low == pytest.approx(wilson_interval(n, n)[0])
    expected_ll = -math.log(1 / (1 + math.exp(-2.0)))
    assert good.log_loss == pytest.approx(expected_ll, rel=1e-6)
    assert good.log_loss_low == pytest.approx(good.log_loss_high)  # every judgment scores the same
    flat = score_heldout(np.zeros(2 * n), data, np.arange(n))
    assert flat.accuracy == 0.5 and flat.log_loss == pytest.approx(math.log(2))


def test_ties_and_both_bad_are_counted_but_not_scored():
    data = PreferenceData.from_pairs(
        np.array([0, 2, 4]), np.array([1, 3, 5]), np.array([1.0, 0.5, 0.5], dtype=np.float32),
        both_bad=np.array([False, False, True]),
    )  # fmt: skip
    score = score_heldout(np.array([1.0, 0, 0, 0, 0, 0]), data, np.array([10, 11, 12]), n_unscored_extra=2)
    assert (score.n, score.n_unscored, score.accuracy) == (1, 4, 1.0)


def test_a_ranking_is_one_observation_scored_by_the_share_of_its_pairs_in_order():
    data = PreferenceData.from_rankings([[0, 1, 2]])
    # The model orders 0 > 2 > 1: two of the three implied pairs are right.
    score = score_heldout(np.array([2.0, 0.0, 1.0]), data, np.array([5]))
    assert score.n == 1 and score.accuracy == pytest.approx(2 / 3)
    pairs, owner = decided_pairs(data, np.array([5]))
    assert len(pairs) == 3 and owner.tolist() == [5, 5, 5]


def test_pairs_of_one_judgment_count_once_and_members_are_averaged():
    # A tied-group ranking became two pairs of judgment 1; judgment 2 is a plain pair.
    data = PreferenceData.from_pairs(np.array([0, 0, 2]), np.array([1, 2, 3]), np.ones(3, dtype=np.float32))
    members = np.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    score = score_heldout(members, data, np.array([1, 1, 2]), likelihood=LikelihoodConfig())
    assert score.n == 2
    # The members' averaged probabilities are exactly ½ for judgment 1's pairs.
    assert score.accuracy == pytest.approx((0.5 + 0.5) / 2)


def test_a_learned_flip_rate_is_scored_at_the_models_value():
    """A fit that learned ε (one per member for an ensemble) is scored with it, as if
    it had been fixed there; without the model's value, labels never flip."""
    data = PreferenceData.from_pairs(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1.0, 0.0, 1.0]))
    owner = np.arange(3)
    scores = np.array([2.0, 0.0, 1.0, -1.0])
    learned = LikelihoodConfig(label_flip_rate=None)
    at = score_heldout(scores, data, owner, likelihood=learned, flip_rate=0.2)
    assert at.log_loss == pytest.approx(
        score_heldout(scores, data, owner, likelihood=LikelihoodConfig(label_flip_rate=0.2)).log_loss
    )
    unflipped = score_heldout(scores, data, owner, likelihood=LikelihoodConfig(label_flip_rate=0.0))
    assert score_heldout(scores, data, owner, likelihood=learned).log_loss == pytest.approx(unflipped.log_loss)
    assert at.log_loss != pytest.approx(unflipped.log_loss)
    # Members: each at its own ε, then their probabilities averaged.
    members = np.stack([scores, 2.0 * scores])
    both = score_heldout(members, data, owner, likelihood=learned, flip_rate=np.array([0.1, 0.3]))
    d = np.array([2.0, 1.0, 2.0])  # the observed winner's margin, member 0
    p = [(1 - e) / (1 + np.exp(-k * d)) + e / (1 + np.exp(k * d)) for k, e in ((1.0, 0.1), (2.0, 0.3))]
    assert both.log_loss == pytest.approx(float(np.mean(-np.log((p[0] + p[1]) / 2))))
