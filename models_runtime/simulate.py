"""Simulated annotators with known utilities, for tests, benchmarks and for checking a
study design before real annotators spend time on it.

Answers follow the same models that :mod:`models_runtime.likelihood` fits, so a fit
on simulated data should recover the utilities that generated it.
"""

from __future__ import annotations

import numpy as np

from models_runtime.preferences import PreferenceData

__all__ = [
    "PreferenceOracle",
    "hidden_utility",
    "linear_utilities",
    "simulate_pairs",
    "simulate_rankings",
    "standardise",
]


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


def standardise(utility: np.ndarray) -> np.ndarray:
    """``utility`` shifted and scaled to mean 0 and standard deviation 1 (float64); a
    constant vector becomes all zeros."""
    u = np.asarray(utility, dtype=np.float64)
    std = float(u.std())
    return (u - u.mean()) / std if std > 0 else np.zeros_like(u)


def hidden_utility(features: np.ndarray, family: str, rng: np.random.Generator, *, hidden: int = 32) -> np.ndarray:
    """A random hidden utility of the rows of ``features`` (``(N, d)``), standardised
    over those rows. ``family`` ``"linear"``: ``u = x·w`` with ``w`` standard normal;
    ``"mlp"``: a random one-hidden-layer tanh network ``u = v·tanh(W x̃ + b)`` on the
    features standardised per column, with ``W`` scaled so that pre-activations have
    unit variance, which makes the utility clearly non-linear in ``x`` while staying
    smooth. Raises ``ValueError`` for an unknown family."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    d = x.shape[1]
    if family == "linear":
        return standardise(x @ rng.standard_normal(d))
    if family == "mlp":
        z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
        w = rng.standard_normal((d, hidden)) / np.sqrt(d)
        b = rng.standard_normal(hidden) * 0.5
        v = rng.standard_normal(hidden)
        return standardise(np.tanh(z @ w + b) @ v)
    raise ValueError(f"family must be 'linear' or 'mlp', got {family!r}")


class PreferenceOracle:
    """A simulated annotator who knows ``utility`` (one value per item).

    Pairs are answered by Bradley–Terry with ``scale`` s, ``P(a ≻ b) = σ(s·(u_a −
    u_b) + position_bias)`` (``position_bias`` > 0 favours the item shown first, i.e.
    ``a``), and the answer is then flipped with probability ``label_flip_rate`` ε.
    Lists are answered by Plackett–Luce on ``s·u`` (Gumbel-max sampling). Answers use
    the generator passed to each call, so a benchmark can give every run its own
    stream."""

    def __init__(
        self,
        utility: np.ndarray,
        *,
        scale: float = 1.0,
        label_flip_rate: float = 0.0,
        position_bias: float = 0.0,
    ) -> None:
        u = np.asarray(utility, dtype=np.float64)
        if u.ndim != 1 or u.size < 2:
            raise ValueError("utility must be a 1-D array of at least two items")
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be finite and non-negative, got {scale}")
        if not 0.0 <= label_flip_rate < 0.5:
            raise ValueError(f"label_flip_rate must be in [0, 0.5), got {label_flip_rate}")
        self.utility = u
        self.scale = float(scale)
        self.label_flip_rate = float(label_flip_rate)
        self.position_bias = float(position_bias)

    def prob_first(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Probability that the answer says ``a ≻ b``, label flips included."""
        z = self.scale * (self.utility[a] - self.utility[b]) + self.position_bias
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        return p * (1.0 - self.label_flip_rate) + (1.0 - p) * self.label_flip_rate

    def answer_pairs(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Outcomes (float32, 1.0 when ``a[i]`` wins, else 0.0) for the pairs ``(a[i], b[i])``."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        return (rng.random(a.shape) < self.prob_first(a, b)).astype(np.float32)

    def answer_list(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``items`` ordered best first by a Plackett–Luce draw on ``scale · utility``."""
        items = np.asarray(items, dtype=np.int64)
        noisy = self.scale * self.utility[items] + rng.gumbel(size=items.shape)
        return items[np.argsort(-noisy, kind="stable")]
