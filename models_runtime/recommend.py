"""Recommendations with uncertainty: the best candidate of each group (prompt), the
probability that each candidate is the best one, how strongly it beats the runner-up,
and a leaderboard.

The posterior samples come from a Bayesian linear Bradley–Terry model on the
candidates' features (:func:`bayes_linear_samples`): a Gaussian prior on the weights
scaled so that a candidate's utility has standard deviation
:data:`PRIOR_UTILITY_SD`, and the Laplace approximation at the posterior mode. Its
uncertainty shrinks with the number of judgments and stays at the prior's where
there are none, so P(best) starts at chance. It replaced posteriors that were not
calibrated: a last-layer Laplace over an MLP head's hidden features (which are learnt
from the same judgments, so 20 random answers looked like evidence) and the members
of an ensemble; tests/models_runtime/test_mr_recommend_calibration.py checks the
coverage of the intervals and P(best) under random answers by simulation.

``P(best)`` of a candidate is the share of samples in which it has the highest
utility of its group. Utilities have no unit a reader can use, so what is shown is a
share of annotators: the probability that the best candidate is preferred to the
runner-up, ``σ(u_best − u_runner)``, with its 95% interval (:class:`RunnerUp`). The
leaderboard also keeps the posterior mean and standard deviation of each utility
relative to the average candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models_runtime.preferences import PreferenceData

__all__ = [
    "POSTERIOR_METHOD",
    "PRIOR_UTILITY_SD",
    "GroupLeaderboard",
    "Recommendation",
    "RunnerUp",
    "bayes_linear_samples",
    "recommend",
]

# Prior standard deviation of a candidate's utility, in Bradley–Terry units (a
# difference of 1 means a 73 % preference). It is the scale the simulator draws
# utilities on; data move the posterior away from it as judgments accumulate.
PRIOR_UTILITY_SD = 1.0
POSTERIOR_METHOD = "Bayesian linear Bradley–Terry, Laplace"


@dataclass(frozen=True)
class RunnerUp:
    """How strongly the best candidate beats the runner-up: the posterior mean of the
    probability that an annotator prefers it, ``σ(u_best − u_runner)``, with a 95%
    interval (2.5th and 97.5th percentiles over the samples). A share of annotators
    is a unit a researcher can read; utilities have none."""

    preferred: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupLeaderboard:
    """One group's candidates, best first: row indices, posterior mean and standard
    deviation of the utility, P(best), and the best candidate against the runner-up
    (None for a group of one)."""

    group: int
    items: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    p_best: np.ndarray
    runner_up: RunnerUp | None = None

    @property
    def best(self) -> int:
        return int(self.items[0])

    def as_dict(self, ids: np.ndarray | None = None, top: int = 10) -> dict[str, Any]:
        """JSON-ready form, with ``ids[row]`` (e.g. candidate ids) instead of rows."""
        keys = self.items if ids is None else np.asarray(ids)[self.items]
        runner_up = None
        if self.runner_up is not None:
            runner_up = {
                "candidate": int(keys[1]),
                "preferred": round(self.runner_up.preferred, 4),
                "low": round(self.runner_up.low, 4),
                "high": round(self.runner_up.high, 4),
            }
        return {
            "best": int(keys[0]),
            "runner_up": runner_up,
            "leaderboard": [
                {
                    "candidate": int(k),
                    "mean": round(float(m), 4),
                    "std": round(float(s), 4),
                    "p_best": round(float(p), 4),
                }
                for k, m, s, p in zip(keys[:top], self.mean[:top], self.std[:top], self.p_best[:top], strict=True)
            ],
        }


@dataclass(frozen=True)
class Recommendation:
    """Per-candidate posterior summaries (``(N,)`` arrays) and per-group leaderboards."""

    method: str
    n_samples: int
    mean: np.ndarray
    std: np.ndarray
    p_best: np.ndarray
    groups: list[GroupLeaderboard]


def recommend(groups: np.ndarray, samples: np.ndarray, method: str) -> Recommendation:
    """Summaries of posterior utility ``samples`` (``(S, N)``, one row per sample) for
    candidates in ``groups`` (``(N,)``, group of each candidate): mean, standard
    deviation, P(best within its group), and each group's leaderboard ordered by
    P(best), then mean."""
    s = np.asarray(samples, dtype=np.float64)
    g = np.asarray(groups)
    if s.ndim != 2 or s.shape[1] != g.shape[0] or s.shape[0] < 1:
        raise ValueError(f"samples must be (S >= 1, {g.shape[0]}), got {s.shape}")
    mean, std = s.mean(axis=0), s.std(axis=0)
    p_best = np.zeros(g.shape[0], dtype=np.float64)
    boards: list[GroupLeaderboard] = []
    order = np.argsort(g, kind="stable")
    cuts = np.flatnonzero(np.diff(g[order])) + 1
    for members in np.split(order, cuts):
        if members.size == 0:
            continue
        # Position (within the group) of each sample's best candidate.
        winners = np.argmax(s[:, members], axis=1)
        p_best[members] = np.bincount(winners, minlength=members.size) / s.shape[0]
        rank = np.lexsort((-mean[members], -p_best[members]))
        ranked = members[rank]
        runner_up = None
        if ranked.size > 1:
            margin = s[:, ranked[0]] - s[:, ranked[1]]
            preferred = 0.5 * (1.0 + np.tanh(0.5 * margin))  # σ(margin), overflow-free
            low, high = np.percentile(preferred, [2.5, 97.5])
            runner_up = RunnerUp(float(preferred.mean()), float(low), float(high))
        boards.append(
            GroupLeaderboard(int(g[members[0]]), ranked, mean[ranked], std[ranked], p_best[ranked], runner_up)
        )
    return Recommendation(method=method, n_samples=int(s.shape[0]), mean=mean, std=std, p_best=p_best, groups=boards)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def bayes_linear_samples(
    features: np.ndarray,
    data: PreferenceData,
    rng: np.random.Generator,
    n_samples: int = 256,
    *,
    prior_sd: float = PRIOR_UTILITY_SD,
    max_iter: int = 50,
) -> np.ndarray:
    """``(n_samples, N)`` utility samples from a Bayesian linear Bradley–Terry model on
    the candidates' ``features`` under its Laplace approximation.

    Utilities are ``u = (x − x̄)·w`` with the prior ``w ~ N(0, τ I)``, τ set so that a
    candidate's prior utility has standard deviation ``prior_sd`` (averaged over the
    candidates): before any judgment every candidate is as likely to be best. The
    maximum a posteriori ``ŵ`` is found by Newton's method on the judged pairs
    (rankings enter as their pairwise split, a tie as half a win each way), and ``w``
    is drawn from ``N(ŵ, (F + I/τ)⁻¹)`` with ``F`` the Fisher information at ``ŵ``.
    Samples are joint across candidates, so P(best) respects the correlations
    between near-identical responses.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    q = x.shape[1]
    spread = float((x * x).sum(axis=1).mean())
    if spread <= 0.0:  # identical candidates: nothing tells them apart
        return np.zeros((n_samples, x.shape[0]), dtype=np.float32)
    prior_precision = spread / prior_sd**2  # 1/τ
    pairs = data.pairwise_split()
    d = x[pairs.pair_left] - x[pairs.pair_right]
    y = pairs.pair_outcome.astype(np.float64)
    weight = pairs.pair_weight.astype(np.float64)

    def objective(w: np.ndarray) -> float:
        z = d @ w
        return float(
            (weight * (y * _log_sigmoid(z) + (1.0 - y) * _log_sigmoid(-z))).sum() - 0.5 * prior_precision * w @ w
        )

    def precision_at(w: np.ndarray) -> np.ndarray:
        p = 0.5 * (1.0 + np.tanh(0.5 * (d @ w)))
        return (d * (weight * p * (1.0 - p))[:, None]).T @ d + prior_precision * np.eye(q)

    w = np.zeros(q)
    value = objective(w)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (d @ w)))
        grad = d.T @ (weight * (y - p)) - prior_precision * w
        step = np.linalg.solve(precision_at(w), grad)
        t = 1.0
        while True:  # the objective is strictly concave; halve a step that overshoots
            candidate = w + t * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        w, value = candidate, new_value
        if np.abs(t * step).max() < 1e-9:
            break
    chol = np.linalg.cholesky(precision_at(w))
    # w = ŵ + L⁻ᵀ z has covariance (L Lᵀ)⁻¹, the posterior's.
    draws = w[:, None] + np.linalg.solve(chol.T, rng.standard_normal((q, n_samples)))
    return (x @ draws).T.astype(np.float32)
