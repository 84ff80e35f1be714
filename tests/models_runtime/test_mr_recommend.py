"""Recommendations: P(best), leaderboards and Bayesian linear Bradley–Terry samples."""

from __future__ import annotations

import numpy as np
import pytest

from models_runtime.preferences import PreferenceData
from models_runtime.recommend import PRIOR_UTILITY_SD, bayes_linear_samples, recommend
from models_runtime.reward import RewardModelConfig, fit_reward_model
from models_runtime.simulate import linear_utilities, simulate_pairs


def test_p_best_counts_each_samples_winner_within_its_group() -> None:
    samples = np.array(
        [
            [3.0, 1.0, 2.0, 0.0, 5.0],
            [1.0, 3.0, 2.0, 9.0, 5.0],
            [3.0, 0.0, 2.0, 0.0, 1.0],
            [3.0, 1.0, 4.0, 0.0, 5.0],
        ]
    )
    groups = np.array([7, 7, 7, 8, 8])
    rec = recommend(groups, samples, "test")
    np.testing.assert_allclose(rec.p_best, [0.5, 0.25, 0.25, 0.25, 0.75])
    first, second = rec.groups
    assert first.group == 7 and first.best == 0 and second.best == 4
    np.testing.assert_allclose(first.mean, samples[:, first.items].mean(axis=0))
    np.testing.assert_allclose(first.std, samples[:, first.items].std(axis=0))
    out = first.as_dict(ids=np.array([10, 11, 12, 13, 14]), top=2)
    assert out["best"] == 10 and [row["candidate"] for row in out["leaderboard"]] == [10, 12]
    # Sample by sample the best (0) beats the runner-up (2) by 1, -1, 1 and -1.
    preferred = 1.0 / (1.0 + np.exp(-np.array([1.0, -1.0, 1.0, -1.0])))
    assert out["runner_up"]["candidate"] == 12
    assert out["runner_up"]["preferred"] == pytest.approx(preferred.mean(), abs=1e-4)
    assert second.as_dict()["runner_up"]["low"] <= second.as_dict()["runner_up"]["high"]
    with pytest.raises(ValueError):
        recommend(groups, samples[:, :3], "test")


def test_bayesian_linear_samples_start_at_the_prior_and_shrink_with_data() -> None:
    rng = np.random.default_rng(0)
    features, utility = linear_utilities(40, 16, rng)
    groups = np.repeat(np.arange(4), 10)
    none = PreferenceData.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    prior = bayes_linear_samples(features, none, np.random.default_rng(1), 4000)
    # No judgments: every utility has the prior's spread and the mean is nowhere.
    assert np.sqrt((prior**2).mean()) == pytest.approx(PRIOR_UTILITY_SD, rel=0.05)
    assert np.abs(prior.mean(axis=0)).max() < 0.15
    spreads, regrets = [], []
    for n in (40, 3000):
        data = simulate_pairs(utility, n, rng)
        samples = bayes_linear_samples(features, data, np.random.default_rng(1), 400)
        assert samples.shape == (400, 40)
        spreads.append(samples.std(axis=0).mean())
        rec = recommend(groups, samples, "laplace")
        regret = [
            (utility[groups == b.group].max() - utility[b.best]) / np.ptp(utility[groups == b.group])
            for b in rec.groups
        ]
        regrets.append(float(np.mean(regret)))
        np.testing.assert_allclose([b.p_best.sum() for b in rec.groups], 1.0)
        assert all(0.0 <= b.runner_up.low <= b.runner_up.preferred <= b.runner_up.high <= 1.0 for b in rec.groups)
    assert spreads[1] < 0.5 * spreads[0]
    # With plenty of data the recommended candidate is at or next to the true best.
    assert regrets[1] < 0.1


def test_last_layer_reproduces_the_scores() -> None:
    rng = np.random.default_rng(2)
    features, utility = linear_utilities(30, 8, rng)
    data = simulate_pairs(utility, 200, rng)
    for head in ("linear", "mlp"):
        model = fit_reward_model(features, data, RewardModelConfig(head=head, device="cpu")).model
        phi = model.last_layer_features(features)
        np.testing.assert_allclose(phi @ model.last_layer_weights(), model.scores(features), atol=1e-5)


def test_the_pairs_space_posterior_is_the_weight_space_one() -> None:
    """With fewer judged pairs than dimensions the posterior is computed in the
    pairs' space; it must be the same posterior: the same MAP weights, and draws
    whose covariance is the weight-space Laplace covariance (F + λI)⁻¹."""
    from models_runtime import recommend as rec

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 12))
    left, right = rng.integers(0, 40, 9), rng.integers(0, 40, 9)
    right = np.where(left == right, (right + 1) % 40, right)
    d = x[left] - x[right]
    y = (rng.random(9) < 0.7).astype(float)
    y[0] = 0.5  # a tie
    weight = rng.uniform(0.5, 2.0, 9)
    w_primal, draw_primal = rec._primal_posterior(d, y, weight, 0.8, 50)
    w_dual, draw_dual = rec._dual_posterior(d, y, weight, 0.8, 50)
    np.testing.assert_allclose(w_dual, w_primal, atol=1e-8)

    p = 0.5 * (1.0 + np.tanh(0.5 * (d @ w_primal)))
    covariance = np.linalg.inv((d * (weight * p * (1 - p))[:, None]).T @ d + 0.8 * np.eye(12))
    for draw in (draw_primal, draw_dual):
        deviations = draw(np.random.default_rng(4), 40_000)
        assert deviations.shape == (12, 40_000)
        np.testing.assert_allclose(np.cov(deviations), covariance, atol=0.03 * np.abs(covariance).max())
    # The public function takes the pairs' space here (9 pairs < 12 dimensions):
    # its samples centre on the weight-space MAP utilities.
    wins = (rng.random(9) < 0.7).astype(np.float32)
    data = PreferenceData.from_pairs(left, right, wins, weight=weight.astype(np.float32))
    centred = x - x.mean(axis=0)
    lam = float((centred * centred).sum(axis=1).mean()) / PRIOR_UTILITY_SD**2
    w_map, _ = rec._primal_posterior(centred[left] - centred[right], wins.astype(float), weight, lam, 50)
    samples = bayes_linear_samples(x, data, np.random.default_rng(5), 20_000)
    assert samples.shape == (20_000, 40)
    np.testing.assert_allclose(samples.mean(axis=0), centred @ w_map, atol=0.05)
