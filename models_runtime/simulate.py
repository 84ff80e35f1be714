"""The one simulator of annotators with known utilities, for tests, benchmarks, the
app's simulated annotators (``activelearn.simulation``) and for checking a study
design before real annotators spend time on it.

Three parts, each written once:

- **hidden utilities**: a random function of item features (:func:`hidden_utility`):
  ``linear``, ``mlp``, ``smooth`` (a wavy function of a few directions, which a
  linear fit on the features misses) or ``needle`` (a few narrow optima over a weak
  background); or a ``hash`` of an item's id when there are no features
  (:func:`hash_utilities`), standardised to mean 0 and standard deviation 1 within
  each group (a prompt's candidates) or over all items;
- **the annotator** (:class:`PreferenceOracle`): Bradley–Terry answers to pairs with
  a scale, a position bias and label flips, Plackett–Luce answers to lists;
- **normalised simple regret** of a recommendation, ``(u* − u(x̂)) / (u* − mean u)``
  (:func:`normalised_regret`, per group in :func:`mean_normalised_regret`).

Answers follow the same models that :mod:`models_runtime.likelihood` fits, so a fit
on simulated data should recover the utilities that generated it. Every random draw
comes from a generator the caller passes, so a benchmark or a simulated annotator
chooses its own streams (and reruns reproduce them).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

from models_runtime.preferences import PreferenceData

__all__ = [
    "PreferenceOracle",
    "hash_utilities",
    "hidden_utility",
    "linear_utilities",
    "mean_normalised_regret",
    "needle_utility",
    "normalised_regret",
    "simulate_pairs",
    "simulate_rankings",
    "smooth_utility",
    "standardise",
    "standardise_within_groups",
]

UTILITY_FAMILIES = ("linear", "mlp", "smooth", "needle")

# The shapes of the "smooth" and "needle" families. They are fixed here, before and
# apart from any strategy result, so that no strategy's figures shaped them.
# The directions are random combinations of the data's top principal components,
# each standardised: random directions of the 384-d space would, on a pool whose
# variance is spread over many directions (real replies), mostly pick up directions
# the data hardly varies in, and the utility would look like noise to any learner.
_SMOOTH_SUBSPACE = 16
_SMOOTH_DIRECTIONS = 3  # random directions the utility depends on
_SMOOTH_WAVES = 4  # sinusoids of random combinations of those directions
# Radians per standard deviation of the data along a combination: from 1.5 a wave
# turns across the bulk of the data, so its linear part is small (for a Gaussian
# projection the best linear fit of sin(ωz + φ) explains about 2ω² e^(−ω²) of its
# variance at most: 47% at ω = 1.5, 15% at 2, 0.2% at 3); up to 3 an item and its
# nearest neighbour still have close utilities on the composed pool.
_SMOOTH_FREQUENCY = (1.5, 3.0)
_NEEDLES = 3
_NEEDLE_SHARE = 0.03  # each needle lifts its centre's nearest 3% of items


# -- hidden utilities ----------------------------------------------------------------------


def standardise(utility: np.ndarray) -> np.ndarray:
    """``utility`` shifted and scaled to mean 0 and standard deviation 1 (float64); a
    constant vector becomes all zeros."""
    u = np.asarray(utility, dtype=np.float64)
    std = float(u.std())
    return (u - u.mean()) / std if std > 0 else np.zeros_like(u)


def standardise_within_groups(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """:func:`standardise` applied within each group (``groups[i]`` is item ``i``'s
    group, e.g. its prompt), so utilities compare only candidates that can meet in a
    comparison; ``groups=None`` standardises over all items."""
    if groups is None:
        return standardise(values)
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    out = np.zeros(len(values), dtype=np.float64)
    for group in np.unique(groups):
        mask = groups == group
        out[mask] = standardise(values[mask])
    return out


def hidden_utility(
    features: np.ndarray,
    family: str,
    rng: np.random.Generator,
    *,
    hidden: int = 32,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """A random hidden utility of the rows of ``features`` (``(N, d)``), standardised
    over those rows, or within each group when ``groups`` is given. ``family``
    ``"linear"``: ``u = x·w`` with ``w`` standard normal; ``"mlp"``: a random
    one-hidden-layer tanh network ``u = v·tanh(W x̃ + b)`` on the features
    standardised per column, with ``W`` scaled so that pre-activations have unit
    variance, which makes the utility clearly non-linear in ``x`` while staying
    smooth (on real embeddings it is still nearly linear: a ridge fit explains most
    of it); ``"smooth"``: :func:`smooth_utility`, a wavy function of a few
    directions that a linear fit explains poorly; ``"needle"``:
    :func:`needle_utility`, a few narrow optima over a weak smooth background. Raises
    ``ValueError`` for an unknown family."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {x.shape}")
    d = x.shape[1]
    if family == "linear":
        return standardise_within_groups(x @ rng.standard_normal(d), groups)
    if family == "mlp":
        z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
        w = rng.standard_normal((d, hidden)) / np.sqrt(d)
        b = rng.standard_normal(hidden) * 0.5
        v = rng.standard_normal(hidden)
        return standardise_within_groups(np.tanh(z @ w + b) @ v, groups)
    if family == "smooth":
        return standardise_within_groups(smooth_utility(x, rng), groups)
    if family == "needle":
        return standardise_within_groups(needle_utility(x, rng), groups)
    raise ValueError(f"family must be one of {', '.join(UTILITY_FAMILIES)}, got {family!r}")


def smooth_utility(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth utility that is far from linear in the features (raw, not
    standardised): the rows are projected on a few random directions of the span of
    their top principal components (the components standardised, so each counts
    alike), each projection scaled by the data's own spread along it, and the utility
    is a sum of sinusoids of random combinations of those projections,
    ``Σ a_k sin(ω_k c_k·z + φ_k)``, with frequencies that make every wave turn
    across the data.

    Why: on real sentence embeddings the ``mlp`` family stays nearly linear (its
    pre-activations rarely leave tanh's linear range along the directions the data
    spreads in), so a linear model is all a strategy needs. Here the utility depends
    on only a few directions, as a real preference might, but bends within the
    spread of the data, so a learner has to find the directions and the shape."""
    x = np.asarray(features, dtype=np.float64)
    # Left singular vectors of the centred rows: the principal component scores,
    # each of unit norm.
    components = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[0][:, :_SMOOTH_SUBSPACE]
    z = components @ rng.standard_normal((components.shape[1], _SMOOTH_DIRECTIONS))
    z /= np.maximum(z.std(axis=0), 1e-12)
    combos = rng.standard_normal((_SMOOTH_WAVES, _SMOOTH_DIRECTIONS))
    combos /= np.linalg.norm(combos, axis=1, keepdims=True)
    frequency = rng.uniform(*_SMOOTH_FREQUENCY, _SMOOTH_WAVES)
    phase = rng.uniform(0.0, 2.0 * np.pi, _SMOOTH_WAVES)
    # Amplitudes away from zero, so every wave counts.
    amplitude = rng.uniform(0.5, 1.0, _SMOOTH_WAVES) * rng.choice([-1.0, 1.0], _SMOOTH_WAVES)
    return np.sin((z @ combos.T) * frequency + phase) @ amplitude


def needle_utility(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A utility with a few narrow optima (raw, not standardised): a weak background
    (:func:`smooth_utility`, standardised) plus :data:`_NEEDLES` bumps centred on
    distinct random rows. A bump's radius is the distance from its centre to its
    ``⌈3% · N⌉``-th nearest other row, so its width follows the data's own density
    and it lifts only its centre's nearest few percent of items; its profile is
    ``(1 − (dist / radius)²)²`` inside the radius and 0 outside. Heights are drawn
    between one and two times the background's range, so every needle's centre
    beats every item outside the needles and the best item is the tallest needle's
    centre.

    Why: a strategy that only climbs the broad trend finds the background's best,
    which is still far from the best item (regret stays large) until it searches
    the few items of a needle. The background keeps the rest of the pool from being
    flat, so there is a trend to learn on the way."""
    x = np.asarray(features, dtype=np.float64)
    background = standardise(smooth_utility(x, rng))
    n = x.shape[0]
    centres = rng.choice(n, size=min(_NEEDLES, n), replace=False)
    heights = (background.max() - background.min()) * rng.uniform(1.0, 2.0, len(centres))
    k = min(n - 1, max(1, int(np.ceil(_NEEDLE_SHARE * n))))
    utility = background.copy()
    for centre, height in zip(centres, heights, strict=True):
        distance = np.linalg.norm(x - x[centre], axis=1)
        radius = np.sort(distance)[k]
        inside = np.clip(1.0 - (distance / max(radius, 1e-12)) ** 2, 0.0, None)
        utility += height * inside**2
    return utility


def hash_utilities(item_ids: np.ndarray, groups: np.ndarray | None, seed: int) -> np.ndarray:
    """Utilities for items known only by id: a standard normal per item, seeded by a
    hash of ``(seed, id)`` so an item keeps its utility whatever else is in the pool,
    then standardised within each group (over all items when ``groups`` is None)."""
    raw = np.empty(len(item_ids), dtype=np.float64)
    for i, item_id in enumerate(item_ids):
        digest = hashlib.sha256(f"prefloop-sim\x1f{seed}\x1f{int(item_id)}".encode()).digest()
        raw[i] = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal()
    return standardise_within_groups(raw, groups)


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


# -- the annotator -----------------------------------------------------------------------


class PreferenceOracle:
    """A simulated annotator who knows ``utility`` (one value per item).

    Pairs are answered by Bradley–Terry with ``scale`` s, ``P(a ≻ b) = σ(s·(u_a −
    u_b) + position_bias)`` (``position_bias`` > 0 favours the item shown first, i.e.
    ``a``), and the answer is then flipped with probability ``label_flip_rate`` ε.
    Lists are answered by Plackett–Luce on ``s·u`` (Gumbel-max sampling). Answers use
    the generator passed to each call, so a benchmark can give every run its own
    stream.

    Pairs can be drawn two ways with the same distribution: :meth:`answer_pairs`
    (vectorised, one uniform per pair against the flip-mixed probability, the
    strategy benchmark's stream) and :meth:`answer_pair` (one question, a uniform for
    the answer and one for the flip, the app's simulated annotators' stream). Both
    are kept so that recorded runs reproduce.
    """

    def __init__(
        self,
        utility: np.ndarray,
        *,
        scale: float = 1.0,
        label_flip_rate: float = 0.0,
        position_bias: float = 0.0,
    ) -> None:
        u = np.asarray(utility, dtype=np.float64)
        if u.ndim != 1:
            raise ValueError(f"utility must be a 1-D array, got shape {u.shape}")
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be finite and non-negative, got {scale}")
        # ε ≥ 0.5 is an adversarial annotator: useless to fit, but a fair stress test.
        if not 0.0 <= label_flip_rate <= 1.0:
            raise ValueError(f"label_flip_rate must be in [0, 1], got {label_flip_rate}")
        self.utility = u
        self.scale = float(scale)
        self.label_flip_rate = float(label_flip_rate)
        self.position_bias = float(position_bias)

    def prob_first_unflipped(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Bradley–Terry probability that ``a ≻ b``, before label flips."""
        z = self.scale * (self.utility[a] - self.utility[b]) + self.position_bias
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def prob_first(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Probability that the answer says ``a ≻ b``, label flips included."""
        p = self.prob_first_unflipped(a, b)
        return p * (1.0 - self.label_flip_rate) + (1.0 - p) * self.label_flip_rate

    def answer_pairs(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Outcomes (float32, 1.0 when ``a[i]`` wins, else 0.0) for the pairs ``(a[i], b[i])``."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        return (rng.random(a.shape) < self.prob_first(a, b)).astype(np.float32)

    def answer_pair(self, a: int, b: int, rng: random.Random) -> bool:
        """Whether the answer to one question "``a`` or ``b``?" is ``a``: a Bradley–Terry
        draw, then a second uniform that flips it with probability ε (two uniforms from
        ``rng`` whatever ε, so the stream does not depend on it)."""
        p = float(self.prob_first_unflipped(np.int64(a), np.int64(b)))
        first = rng.random() < p
        if rng.random() < self.label_flip_rate:
            first = not first
        return first

    def answer_list(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``items`` ordered best first by a Plackett–Luce draw on ``scale · utility``."""
        items = np.asarray(items, dtype=np.int64)
        noisy = self.scale * self.utility[items] + rng.gumbel(size=items.shape)
        return items[np.argsort(-noisy, kind="stable")]


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


# -- regret --------------------------------------------------------------------------------


def normalised_regret(utility: np.ndarray, best: int) -> float:
    """Normalised simple regret of recommending item ``best``: ``(u* − u(best)) / (u* −
    mean u)``; 0 is the best item, 1 the expectation of a uniformly random pick."""
    top = float(np.max(utility))
    return (top - float(utility[best])) / (top - float(np.mean(utility)))


def mean_normalised_regret(utility: np.ndarray, groups: np.ndarray, scores: np.ndarray | None) -> float:
    """Mean over groups of the normalised simple regret of each group's top-scored item
    (groups with fewer than two items or equal utilities are skipped; NaN when none is
    left). ``scores=None`` (no model yet) gives the expected regret of a uniformly
    random pick, which is 1 by construction."""
    regrets = []
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        u = utility[rows]
        spread = u.max() - u.mean()
        if len(rows) < 2 or spread <= 0:
            continue
        picked = u.mean() if scores is None else u[int(np.argmax(scores[rows]))]
        regrets.append((u.max() - picked) / spread)
    return float(np.mean(regrets)) if regrets else float("nan")
