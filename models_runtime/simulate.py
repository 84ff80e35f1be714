"""Simulated annotators with known utilities, for tests, benchmarks and for checking a
study design before real annotators spend time on it.

Answers follow the same models that :mod:`models_runtime.likelihood` fits, so a fit
on simulated data should recover the utilities that generated it.
"""

from __future__ import annotations

import numpy as np

from models_runtime.preferences import PreferenceData

__all__ = ["linear_utilities", "simulate_pairs", "simulate_rankings"]


def linear_utilities(
    n_items: int, dim: int, rng: np.random.Generator, scale: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm random item features ``(n_items, dim)`` float32 and utilities that are a
    hidden linear function of them, standardised to standard deviation ``scale``."""
    features = rng.standard_normal((n_items, dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    utility = features.astype(np.float64) @ rng.standard_normal(dim)
    utility = scale * (utility - utility.mean()) / utility.std()
    return features, utility


def _distinct_pairs(n_items: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    left = rng.integers(0, n_items, n)
    right = (left + rng.integers(1, n_items, n)) % n_items
    return left, right


def simulate_pairs(
    utility: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    tie_param: float = 0.0,
    label_flip_rate: float = 0.0,
) -> PreferenceData:
    """``n`` pairwise answers on uniformly drawn distinct pairs: Bradley–Terry, with
    Davidson ties when ``tie_param`` (ν) > 0, and the answer flipped with probability
    ``label_flip_rate`` when it is not a tie."""
    u = np.asarray(utility, dtype=np.float64)
    if u.size < 2:
        raise ValueError("need at least two items")
    left, right = _distinct_pairs(u.size, n, rng)
    half = (u[left] - u[right]) / 2.0
    weights = np.stack([np.exp(half), np.full(n, tie_param), np.exp(-half)], axis=1)
    probs = weights / weights.sum(axis=1, keepdims=True)
    draw = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    outcome = np.array([1.0, 0.5, 0.0])[np.minimum(draw, 2)]
    flip = (outcome != 0.5) & (rng.random(n) < label_flip_rate)
    outcome[flip] = 1.0 - outcome[flip]
    return PreferenceData.from_pairs(left, right, outcome.astype(np.float32))


def simulate_rankings(utility: np.ndarray, n: int, k: int, rng: np.random.Generator) -> PreferenceData:
    """``n`` full Plackett–Luce rankings of ``k`` distinct uniformly drawn items each
    (sampled exactly with the Gumbel-max trick: sorting utilities plus Gumbel noise)."""
    u = np.asarray(utility, dtype=np.float64)
    if not 2 <= k <= u.size:
        raise ValueError(f"k must be between 2 and the number of items ({u.size}), got {k}")
    shown = np.argsort(rng.random((n, u.size)), axis=1)[:, :k]
    noisy = u[shown] + rng.gumbel(size=(n, k))
    order = np.argsort(-noisy, axis=1)
    return PreferenceData.from_rankings(np.take_along_axis(shown, order, axis=1))
