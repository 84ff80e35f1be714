"""Recommendations with uncertainty: the best candidate of each group (prompt), the
probability that each candidate is the best one, how strongly it beats the runner-up,
and a leaderboard.

The leaderboards the app shows read the kernel Bradley–Terry posterior
(:mod:`models_runtime.kernel_bt`, built on this module's Newton and Laplace
solvers). :func:`bayes_linear_samples` is its linear special case, a Bayesian
linear Bradley–Terry model on the candidates' features, which made the app's
leaderboards before it: a Gaussian prior on the weights
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

from collections.abc import Callable
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
    posterior mean, then P(best). The top is the candidate of highest expected
    utility, the Bayes choice for the expected regret of a pick; the candidate most
    likely to be the best can differ when a little-judged one has a wide posterior
    (on the strategy benchmark's development seeds, recommending by P(best) under
    the kernel posterior left a mean regret of 0.27 where the mean's top left 0.22)."""
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
        rank = np.lexsort((-p_best[members], -mean[members]))
        ranked = members[rank]
        runner_up = None
        if ranked.size > 1:
            margin = s[:, ranked[0]] - s[:, ranked[1]]
            preferred = _sigmoid(margin)
            low, high = np.percentile(preferred, [2.5, 97.5])
            runner_up = RunnerUp(float(preferred.mean()), float(low), float(high))
        boards.append(
            GroupLeaderboard(int(g[members[0]]), ranked, mean[ranked], std[ranked], p_best[ranked], runner_up)
        )
    return Recommendation(method=method, n_samples=int(s.shape[0]), mean=mean, std=std, p_best=p_best, groups=boards)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


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
    between near-identical responses. With fewer judged pairs than feature
    dimensions the same posterior is computed in the pairs' space
    (:func:`_dual_posterior`), so wide features (2,304-d pooled layers) cost a
    (pairs × pairs) solve instead of a (dims × dims) one.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    spread = float((x * x).sum(axis=1).mean())
    if spread <= 0.0:  # identical candidates: nothing tells them apart
        return np.zeros((n_samples, x.shape[0]), dtype=np.float32)
    prior_precision = spread / prior_sd**2  # 1/τ
    pairs = data.pairwise_split()
    d = x[pairs.pair_left] - x[pairs.pair_right]
    y = pairs.pair_outcome.astype(np.float64)
    weight = pairs.pair_weight.astype(np.float64)
    # Fewer judged pairs than feature dimensions (early in a study, or wide
    # features such as several pooled layers): the same posterior, computed with
    # (pairs × pairs) systems instead of (dims × dims) ones.
    solve = _dual_posterior if d.shape[0] < x.shape[1] else _primal_posterior
    w, draw = solve(d, y, weight, prior_precision, max_iter)
    return (x @ (w[:, None] + draw(rng, n_samples))).T.astype(np.float32)


def _newton(
    objective: Callable[[np.ndarray], float],
    direction: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    max_iter: int,
) -> np.ndarray:
    """Maximise a strictly concave ``objective`` from ``start`` by Newton steps
    (``direction(v)`` gives one), halving a step that overshoots."""
    v = start
    value = objective(v)
    for _ in range(max_iter):
        step = direction(v)
        t = 1.0
        while True:
            candidate = v + t * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        v, value = candidate, new_value
        if not step.size or np.abs(t * step).max() < 1e-9:
            break
    return v


# ``draw(rng, n_samples)``: ``(dims, n_samples)`` deviations from the MAP weights.
_Draw = Callable[[np.random.Generator, int], np.ndarray]


def _log_likelihood(z: np.ndarray, y: np.ndarray, weight: np.ndarray) -> float:
    return float((weight * (y * _log_sigmoid(z) + (1.0 - y) * _log_sigmoid(-z))).sum())


def _primal_posterior(
    d: np.ndarray, y: np.ndarray, weight: np.ndarray, prior_precision: float, max_iter: int
) -> tuple[np.ndarray, _Draw]:
    """The MAP weights and a sampler of deviations from them under the Laplace
    posterior, ``draw(rng, n_samples)`` → ``(dims, n_samples)`` draws of
    ``N(0, (F + λI)⁻¹)``, with ``(dims × dims)`` systems."""
    q = d.shape[1]

    def precision_at(w: np.ndarray) -> np.ndarray:
        p = _sigmoid(d @ w)
        return (d * (weight * p * (1.0 - p))[:, None]).T @ d + prior_precision * np.eye(q)

    def direction(w: np.ndarray) -> np.ndarray:
        p = _sigmoid(d @ w)
        return np.linalg.solve(precision_at(w), d.T @ (weight * (y - p)) - prior_precision * w)

    w = _newton(
        lambda w: _log_likelihood(d @ w, y, weight) - 0.5 * prior_precision * w @ w, direction, np.zeros(q), max_iter
    )
    chol = np.linalg.cholesky(precision_at(w))

    def draw(rng: np.random.Generator, n_samples: int) -> np.ndarray:
        # L⁻ᵀ z has covariance (L Lᵀ)⁻¹, the posterior's.
        return np.linalg.solve(chol.T, rng.standard_normal((q, n_samples)))

    return w, draw


def _dual_posterior(
    d: np.ndarray, y: np.ndarray, weight: np.ndarray, prior_precision: float, max_iter: int
) -> tuple[np.ndarray, _Draw]:
    """:func:`_primal_posterior`'s posterior with ``(pairs × pairs)`` systems. The
    MAP weights lie in the span of the pairs' differences, ``w = Dᵀα``; a Newton
    step in ``w`` is ``Dᵀ (W K + λI)⁻¹ (g − λα)`` with ``K = D Dᵀ``. Deviations
    are drawn by conditioning a prior draw on pseudo-observations (Matheron's
    rule): ``δ = w₀ − Dᵀ S B⁻¹ (S D w₀ + ξ) / λ`` with ``S = W^½`` and
    ``B = I + S K S / λ``, whose covariance is ``(DᵀWD + λI)⁻¹`` by Woodbury."""
    n = d.shape[0]
    lam = prior_precision
    k = d @ d.T

    def direction(alpha: np.ndarray) -> np.ndarray:
        p = _sigmoid(k @ alpha)
        curvature = weight * p * (1.0 - p)
        return np.linalg.solve(curvature[:, None] * k + lam * np.eye(n), weight * (y - p) - lam * alpha)

    def objective(alpha: np.ndarray) -> float:
        z = k @ alpha
        return _log_likelihood(z, y, weight) - 0.5 * lam * alpha @ z

    alpha = _newton(objective, direction, np.zeros(n), max_iter)
    p = _sigmoid(k @ alpha)
    root = np.sqrt(weight * p * (1.0 - p))
    chol = np.linalg.cholesky(np.eye(n) + (root[:, None] * k * root[None, :]) / lam)

    def draw(rng: np.random.Generator, n_samples: int) -> np.ndarray:
        w0 = rng.standard_normal((d.shape[1], n_samples)) / np.sqrt(lam)
        rhs = root[:, None] * (d @ w0) + rng.standard_normal((n, n_samples))
        solved = np.linalg.solve(chol.T, np.linalg.solve(chol, rhs))
        return w0 - d.T @ (root[:, None] * solved) / lam

    return d.T @ alpha, draw
