"""Statistical correctness of fit_reward_model: agreement with an independent MLE,
recovery of known utilities, Plackett–Luce against the pairwise split, ties, label
flips, rankings in checkpoints, and the metrics used to judge all of that."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models_runtime.metrics import expected_calibration_error, kendall_tau, spearman_rho
from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.reward import RewardModel, RewardModelConfig, fit_reward_model
from models_runtime.simulate import linear_utilities, simulate_pairs, simulate_rankings


def exact(**likelihood) -> RewardModelConfig:
    """An unpenalised maximum-likelihood fit of one utility per item (one-hot
    features, linear head, L-BFGS, nothing held out), without label flips unless
    ``likelihood`` sets them."""
    return RewardModelConfig(
        head="linear",
        l2=0.0,
        optimizer="lbfgs",
        holdout_fraction=0.0,
        device="cpu",
        likelihood=LikelihoodConfig(**{"label_flip_rate": 0.0, **likelihood}),
    )


def centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean()


def test_bradley_terry_agrees_with_choix() -> None:
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(2)
    n_items = 30
    data = simulate_pairs(rng.normal(size=n_items), 3_000, rng)
    winners = np.where(data.pair_outcome > 0.5, data.pair_left, data.pair_right)
    losers = np.where(data.pair_outcome > 0.5, data.pair_right, data.pair_left)
    reference = choix.ilsr_pairwise(n_items, list(zip(winners.tolist(), losers.tolist(), strict=True)), alpha=0)
    onehot = np.eye(n_items, dtype=np.float32)
    ours = fit_reward_model(onehot, data, exact()).model.scores(onehot)
    assert np.max(np.abs(centred(ours) - centred(reference))) < 1e-3


def test_plackett_luce_agrees_with_choix() -> None:
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(5)
    n_items = 15
    data = simulate_rankings(rng.normal(size=n_items), 400, 4, rng)
    reference = choix.ilsr_rankings(n_items, data.rank_items.tolist(), alpha=0)
    onehot = np.eye(n_items, dtype=np.float32)
    ours = fit_reward_model(onehot, data, exact()).model.scores(onehot)
    assert np.max(np.abs(centred(ours) - centred(reference))) < 1e-3


def test_recovers_utilities_from_enough_comparisons() -> None:
    rng = np.random.default_rng(3)
    features, utility = linear_utilities(300, 32, rng)
    data = simulate_pairs(utility, 6_000, rng)
    model = fit_reward_model(features, data, RewardModelConfig(head="mlp", device="cpu")).model
    assert spearman_rho(model.scores(features), utility) >= 0.95
    assert kendall_tau(model.scores(features), utility) >= 0.8


def test_plackett_luce_beats_pairwise_split_at_equal_effort() -> None:
    """The same K=4 rankings (same annotator effort), fitted with the full
    Plackett–Luce likelihood and with every ranking split into its six pairs: the
    K-wise fit is closer to the true utilities (Zhu, Jordan & Jiao 2023)."""
    errors = {"plackett_luce": [], "pairwise_split": []}
    onehot = np.eye(20, dtype=np.float32)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        utility = centred(rng.normal(size=20))
        data = simulate_rankings(utility, 60, 4, rng)
        for listwise in errors:
            config = RewardModelConfig(
                head="linear",
                l2=1e-3,
                optimizer="lbfgs",
                holdout_fraction=0.0,
                device="cpu",
                likelihood=LikelihoodConfig(listwise=listwise),
            )
            scores = fit_reward_model(onehot, data, config).model.scores(onehot)
            errors[listwise].append(np.mean((centred(scores) - utility) ** 2))
    assert np.mean(errors["plackett_luce"]) < 0.9 * np.mean(errors["pairwise_split"])


@pytest.mark.parametrize("ties", ["davidson", "rao_kupper"])
def test_tie_models_fit_tie_heavy_data(ties: str) -> None:
    rng = np.random.default_rng(7)
    utility = centred(rng.normal(size=12))
    data = simulate_pairs(utility, 4_000, rng, tie_param=1.0)
    assert 0.2 < data.tie_rate() < 0.4
    onehot = np.eye(12, dtype=np.float32)
    result = fit_reward_model(onehot, data, exact(ties=ties))
    assert spearman_rho(result.model.scores(onehot), utility) >= 0.95
    soft = fit_reward_model(onehot, data, exact(ties="soft"))
    # Davidson is the generating model: its fit is tighter than the soft-label one.
    if ties == "davidson":
        err = np.abs(centred(result.model.scores(onehot)) - utility).mean()
        err_soft = np.abs(centred(soft.model.scores(onehot)) - utility).mean()
        assert err < err_soft


def test_known_flip_rate_undoes_the_shrinkage_of_noisy_labels() -> None:
    rng = np.random.default_rng(11)
    utility = centred(rng.normal(size=15) * 1.5)
    data = simulate_pairs(utility, 6_000, rng, label_flip_rate=0.2)
    onehot = np.eye(15, dtype=np.float32)
    naive = fit_reward_model(onehot, data, exact()).model.scores(onehot)
    robust = fit_reward_model(onehot, data, exact(label_flip_rate=0.2)).model.scores(onehot)
    # Flipped labels make plain Bradley–Terry underestimate every utility gap.
    assert np.std(naive) < 0.8 * np.std(utility)
    assert abs(np.std(robust) / np.std(utility) - 1.0) < 0.15
    assert np.abs(centred(robust) - utility).mean() < np.abs(centred(naive) - utility).mean()


def test_weights_count_like_repeated_judgments() -> None:
    rng = np.random.default_rng(4)
    data = simulate_pairs(rng.normal(size=8), 300, rng)
    onehot = np.eye(8, dtype=np.float32)
    weights = rng.integers(1, 4, size=300)
    weighted = PreferenceData.from_pairs(data.pair_left, data.pair_right, data.pair_outcome, weight=weights)
    repeated = data.select(np.repeat(np.arange(300), weights))
    a = fit_reward_model(onehot, weighted, exact()).model.scores(onehot)
    b = fit_reward_model(onehot, repeated, exact()).model.scores(onehot)
    np.testing.assert_allclose(centred(a), centred(b), atol=1e-3)


def test_both_bad_judgments_lower_both_items() -> None:
    rng = np.random.default_rng(8)
    data = simulate_pairs(np.zeros(6), 400, rng, tie_param=0.5)
    flagged = PreferenceData.combine(data, PreferenceData.from_pairs([0] * 30, [1] * 30, both_bad=np.ones(30, bool)))
    plain = PreferenceData.combine(data, PreferenceData.from_pairs([0] * 30, [1] * 30, [0.5] * 30))
    onehot = np.eye(6, dtype=np.float32)
    low = fit_reward_model(onehot, flagged, exact()).model.scores(onehot)
    tie = fit_reward_model(onehot, plain, exact()).model.scores(onehot)
    assert low[0] < tie[0] - 0.1 and low[1] < tie[1] - 0.1
    assert low[0] < 0 and low[1] < 0


def test_mixed_pairs_and_rankings_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(9)
    features, utility = linear_utilities(80, 16, rng)
    data = PreferenceData.combine(simulate_pairs(utility, 500, rng), simulate_rankings(utility, 200, 4, rng))
    config = RewardModelConfig(device="cpu", likelihood=LikelihoodConfig(ties="rao_kupper", label_flip_rate=0.05))
    result = fit_reward_model(features, data, config)
    assert spearman_rho(result.model.scores(features), utility) > 0.85
    assert result.metrics["n_heldout"] == 140
    loaded = RewardModel.load(result.model.save(tmp_path / "v1"))
    assert loaded.config == config
    assert np.array_equal(loaded.scores(features), result.model.scores(features))


def test_rank_correlations_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 200).astype(float)
    b = a + rng.normal(size=200)
    assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b)[0], abs=1e-12)
    assert spearman_rho(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman_rho(np.ones(5), np.arange(5)))
    with pytest.raises(ValueError):
        kendall_tau(np.arange(3), np.arange(4))


def test_expected_calibration_error() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 1.0, 100_000)
    calibrated = (rng.random(p.size) < p).astype(float)
    assert expected_calibration_error(p, calibrated) < 0.01
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert expected_calibration_error(overconfident, calibrated) > 0.2
    # Two predictions at 0.9 confidence, one right: the gap is 0.4.
    assert expected_calibration_error(np.array([0.9, 0.1]), np.array([1.0, 1.0])) == pytest.approx(0.4)
    assert math.isnan(expected_calibration_error(np.array([0.7]), np.array([0.5])))
