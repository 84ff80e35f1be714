"""The runtime's Bradley–Terry for counts: the closed form, finite scores without
losses, the bootstrap, and the same optimum as the torch likelihood's fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models_runtime.preferences import LikelihoodConfig, PreferenceData
from models_runtime.reward import RewardModelConfig, fit_reward_model
from models_runtime.stats.bradley_terry import (
    BT_RIDGE,
    PairEvents,
    bradley_terry_bootstrap,
    bradley_terry_posterior,
    bradley_terry_scores,
)


def test_two_items_have_the_closed_form_and_stay_finite_without_losses():
    wins = np.array([[0.0, 7.0], [3.0, 0.0]])
    scores = bradley_terry_scores(wins, ridge=1e-9)
    assert scores[0] - scores[1] == pytest.approx(math.log(7 / 3), abs=1e-6)
    # With a real ridge the optimum is centred: the prior pulls the mean to zero.
    assert bradley_terry_scores(wins).sum() == pytest.approx(0.0, abs=1e-9)
    # A clean sweep and an item never compared: finite, ordered, centred.
    sweep = bradley_terry_scores(np.array([[0, 10, 0], [0, 0, 0], [0, 0, 0.0]]))
    assert np.isfinite(sweep).all() and sweep[0] > sweep[2] > sweep[1]
    assert sweep[2] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="non-negative"):
        bradley_terry_scores(np.array([[0, -1], [0, 0.0]]))
    with pytest.raises(ValueError, match="ridge must be positive"):
        bradley_terry_scores(wins, ridge=0.0)


def _weighted_pairs(seed: int, k: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs of k items answered by Bradley–Terry, 10 % ties, integer
    weights; item 0 wins every pair it is in."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(size=k)
    left = rng.integers(0, k, n)
    right = (left + rng.integers(1, k, n)) % k
    p_left = 1 / (1 + np.exp(-(strength[left] - strength[right])))
    outcome = np.where(rng.random(n) < 0.1, 0.5, (rng.random(n) < p_left).astype(float))
    outcome = np.where(left == 0, 1.0, np.where(right == 0, 0.0, outcome))
    return left, right, outcome, rng.integers(1, 4, n).astype(float)


def _objective(theta: np.ndarray, wins: np.ndarray, ridge: float) -> float:
    """Σ wins_ij log σ(θ_i − θ_j) − ridge/2 ‖θ‖², in float64."""
    return float(-(wins * np.logaddexp(0.0, theta[None, :] - theta[:, None])).sum() - 0.5 * ridge * theta @ theta)


@pytest.mark.parametrize("ridge", [BT_RIDGE, 1.0])
def test_counts_fit_agrees_with_the_torch_likelihood_fit_of_the_same_model(ridge):
    """One model checked two ways: Newton on win counts here, and fit_reward_model
    (PreferenceLikelihood with soft ties, one utility per item as a linear head on
    one-hot features, L-BFGS, nothing held out). The torch objective is the weighted
    *mean* NLL plus l2 ‖w‖² with the bias free, so ridge/2 ‖θ‖² on the summed NLL is
    l2 = ridge / (2 · total weight); both optima are centred on the judged items."""
    k = 8
    left, right, outcome, weight = _weighted_pairs(seed=4, k=k)
    wins = np.zeros((k, k))
    np.add.at(wins, (left, right), weight * outcome)
    np.add.at(wins, (right, left), weight * (1 - outcome))
    counts_fit = bradley_terry_scores(wins, ridge=ridge)

    config = RewardModelConfig(
        head="linear",
        l2=ridge / (2 * weight.sum()),
        optimizer="lbfgs",
        holdout_fraction=0.0,
        device="cpu",
        likelihood=LikelihoodConfig(ties="soft", label_flip_rate=0.0),
    )
    onehot = np.eye(k, dtype=np.float32)
    data = PreferenceData.from_pairs(left, right, outcome, weight=weight)
    torch_fit = fit_reward_model(onehot, data, config).model.scores(onehot).astype(np.float64)

    # Same scores up to the float32 L-BFGS's precision (item 0, which won every
    # pair, sits on the flattest part of the likelihood and is off by most)...
    assert np.abs(counts_fit - torch_fit).max() < 1e-3
    assert np.abs(counts_fit - torch_fit)[1:].max() < 3e-4
    # ...and the same optimum: the torch fit's objective (≈ −500) is within 1e-5
    # of Newton's, never above it.
    gap = _objective(counts_fit, wins, ridge) - _objective(torch_fit, wins, ridge)
    assert 0.0 <= gap < 1e-5
    assert counts_fit[0] == counts_fit.max() and counts_fit.sum() == pytest.approx(0.0, abs=1e-9)


def _events(winner: list[int], loser: list[int], k: int) -> PairEvents:
    n = len(winner)
    return PairEvents(
        judgment=np.arange(n), winner=np.array(winner), loser=np.array(loser), weight=np.ones(n), n_judgments=n, k=k
    )


def test_bootstrap_brackets_the_estimate_is_reproducible_and_p_best_sums_to_one():
    rng = np.random.default_rng(1)
    winner, loser = [], []
    for _ in range(300):
        a, b = rng.choice(3, 2, replace=False)
        p = 1 / (1 + math.exp(-(a - b)))  # item 2 is the strongest
        winner.append(int(a) if rng.random() < p else int(b))
        loser.append(int(b) if winner[-1] == a else int(a))
    events = _events(winner, loser, k=3)
    fit = bradley_terry_bootstrap(events, n_bootstrap=100, seed=7)
    assert fit.replicates == 100
    assert (fit.low <= fit.scores).all() and (fit.scores <= fit.high).all()
    assert fit.p_best.sum() == pytest.approx(1.0) and int(np.argmax(fit.p_best)) == 2
    again = bradley_terry_bootstrap(events, n_bootstrap=100, seed=7)
    assert np.array_equal(again.low, fit.low) and np.array_equal(again.p_best, fit.p_best)


def test_bootstrap_without_replicates_collapses_onto_the_estimate():
    fit = bradley_terry_bootstrap(_events([0, 0, 1], [1, 1, 0], k=2), n_bootstrap=0)
    assert fit.replicates == 0
    assert np.array_equal(fit.low, fit.scores) and np.array_equal(fit.high, fit.scores)
    assert fit.p_best.tolist() == [1.0, 0.0]


def test_wins_scale_each_judgments_events_by_its_bootstrap_count():
    # Judgment 0 is a tie (two half events), judgment 1 a plain win of item 1.
    events = PairEvents(
        judgment=np.array([0, 0, 1]),
        winner=np.array([0, 1, 1]),
        loser=np.array([1, 0, 0]),
        weight=np.array([0.5, 0.5, 1.0]),
        n_judgments=2,
        k=2,
    )
    assert events.wins().tolist() == [[0.0, 0.5], [1.5, 0.0]]
    assert events.wins(np.array([2.0, 0.0])).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def _simulated_fit(fit, k: int, n: int, truth_sd: float, seed: int):
    """True scores (drawn with standard deviation ``truth_sd``, centred), ``n``
    Bradley–Terry answers on random pairs, and ``fit`` of them."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(k) * truth_sd
    truth -= truth.mean()
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    first = rng.random(n) < 1.0 / (1.0 + np.exp(-(truth[a] - truth[b])))
    events = PairEvents(np.arange(n), np.where(first, a, b), np.where(first, b, a), np.ones(n), n, k)
    return truth, fit(events, seed)


def leaderboard_calibration(fit, reps: int = 300) -> dict[str, float]:
    """Coverage of the 95% intervals and P(best) against the truth, over seeded
    simulated leaderboards: 4 sources and 20 judgments with true scores of standard
    deviation 1; and 2 sources with 20 random answers."""
    covered, claimed, right, confident = [], [], [], []
    for seed in range(reps):
        truth, result = _simulated_fit(fit, 4, 20, 1.0, seed)
        covered.append(np.mean((result.low <= truth) & (truth <= result.high)))
        top = int(np.argmax(result.p_best))
        claimed.append(result.p_best[top])
        right.append(top == int(np.argmax(truth)))
        _, coin = _simulated_fit(fit, 2, 20, 0.0, seed)
        confident.append(coin.p_best.max() >= 0.95)
    return {
        "coverage": float(np.mean(covered)),
        "p_best_claimed": float(np.mean(claimed)),
        "truly_best": float(np.mean(right)),
        "random_answers_p_best_95": float(np.mean(confident)),
    }


def test_the_leaderboard_posterior_covers_the_truth_and_is_not_overconfident_under_random_answers():
    figures = leaderboard_calibration(lambda events, seed: bradley_terry_posterior(events, n_samples=1000, seed=seed))
    assert figures["coverage"] >= 0.90, figures
    assert figures["p_best_claimed"] <= figures["truly_best"] + 0.05, figures
    # Two equal sources after 20 coin flips: "95% sure" should be rare (a 15–5
    # split happens about 4% of the time either way).
    assert figures["random_answers_p_best_95"] <= 0.10, figures


if __name__ == "__main__":  # python -m tests.models_runtime.stats.test_bradley_terry
    print("bootstrap", leaderboard_calibration(lambda e, s: bradley_terry_bootstrap(e, n_bootstrap=200, seed=s)))
    print("posterior", leaderboard_calibration(lambda e, s: bradley_terry_posterior(e, n_samples=1000, seed=s)))
