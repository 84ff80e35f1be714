"""Calibration of what the study page shows about each prompt's best response: the 95%
interval of "preferred to the runner-up" and P(best), checked by simulation.

Annotators follow Bradley–Terry on a known utility that is a linear function of the
candidates' features (standard deviation 1, the posterior's prior scale), or answer at
random. Every draw is seeded, so the figures are the same on every run.
"""

from __future__ import annotations

import numpy as np
import pytest

from models_runtime import kinds
from models_runtime.preferences import PreferenceData
from models_runtime.recommend import recommend
from models_runtime.simulate import PreferenceOracle, linear_utilities

N_PROMPTS, K, DIM = 10, 3, 16


def _within_group_pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    group = rng.integers(0, N_PROMPTS, n)
    first = rng.integers(0, K, n)
    second = (first + rng.integers(1, K, n)) % K
    return group * K + first, group * K + second


def _study(kind: str, seed: int, n_judgments: int, *, random_answers: bool = False):
    """One simulated study: features, groups, true utilities and the shown recommendation."""
    rng = np.random.default_rng(seed)
    features, utility = linear_utilities(N_PROMPTS * K, DIM, rng, scale=1.0)
    groups = np.repeat(np.arange(N_PROMPTS), K)
    left, right = _within_group_pairs(n_judgments, rng)
    oracle = PreferenceOracle(np.zeros_like(utility) if random_answers else utility)
    data = PreferenceData.from_pairs(left, right, oracle.answer_pairs(left, right, rng))
    spec = kinds.get(kind)
    model = spec.fit(features, data, spec.config({"seed": seed}, "cpu"), None).model
    samples, _ = spec.posterior(model, features, data, np.random.default_rng(seed + 1), 512)
    return utility, groups, recommend(groups, samples, "test")


def calibration_figures(kind: str, *, seeds: int = 12, n_judgments: int = 60) -> dict[str, float]:
    """Coverage of the shown 95% intervals, mean P(best) of the recommended responses
    and how often they are truly best, over ``seeds`` simulated studies."""
    covered, claimed, right = [], [], []
    for seed in range(seeds):
        utility, groups, rec = _study(kind, seed, n_judgments)
        for board in rec.groups:
            best, runner = int(board.items[0]), int(board.items[1])
            truth = 1.0 / (1.0 + np.exp(-(utility[best] - utility[runner])))
            covered.append(board.runner_up.low <= truth <= board.runner_up.high)
            claimed.append(float(board.p_best[0]))
            right.append(utility[best] >= utility[groups == board.group].max())
    return {
        "prompts": len(covered),
        "coverage": float(np.mean(covered)),
        "p_best_claimed": float(np.mean(claimed)),
        "truly_best": float(np.mean(right)),
    }


def random_answer_figures(kind: str, *, seeds: int = 6, n_judgments: int = 20) -> dict[str, float]:
    """Top P(best) per prompt when every answer is a coin flip."""
    top = []
    for seed in range(seeds):
        _, _, rec = _study(kind, seed, n_judgments, random_answers=True)
        top += [float(board.p_best[0]) for board in rec.groups]
    return {"prompts": len(top), "mean_top_p_best": float(np.mean(top)), "max_top_p_best": float(np.max(top))}


# The study default (kernel), and the MLP head, whose own last-layer posterior
# failed both checks and whose leaderboard now reads the kernel posterior fitted
# beside it (models_runtime.kinds); the ensemble's goes the same way.
@pytest.mark.parametrize("kind", ["mlp", "kernel"])
def test_preferred_to_runner_up_intervals_cover_the_truth_and_p_best_is_calibrated(kind: str) -> None:
    figures = calibration_figures(kind)
    assert figures["coverage"] >= 0.90, figures
    # Not overconfident: the recommended response is the true best at least about as
    # often as its P(best) claims on average (120 prompts; a 10-point allowance).
    assert figures["p_best_claimed"] <= figures["truly_best"] + 0.10, figures


@pytest.mark.parametrize("kind", ["mlp", "kernel"])
def test_random_answers_do_not_make_p_best_confident(kind: str) -> None:
    """20 random judgments over 10 prompts of 3 responses: nothing is known, and
    P(best) must say so (the issue saw 98% here). A chance pick is right a third of
    the time."""
    figures = random_answer_figures(kind)
    assert figures["mean_top_p_best"] < 0.6, figures
    assert figures["max_top_p_best"] < 0.9, figures


if __name__ == "__main__":  # the figures in a report: python -m tests.models_runtime.test_mr_recommend_calibration
    for name in ("kernel", "linear", "mlp", "ensemble"):
        print(name, calibration_figures(name), random_answer_figures(name), flush=True)
