"""Scoring a fitted model on a study's evaluation judgments, with 95% intervals.

A study keeps a fixed evaluation set: each judgment is put in it or in the
training set once, by :func:`evaluation_draw` of a stable key against the study's
rate, and no fit ever trains on it. :func:`score_heldout` then scores a model on
those judgments, one observation per judgment:

* **accuracy**: whether the model predicts the winner. A pair decided by the
  annotator counts 1 when the model gave the winner the higher probability, 0 when
  it gave it the lower one and ½ when it gave both exactly ½. A ranking counts the
  share of the pairs it implies (each ordered item above every item below it)
  that the model orders the same way. Ties and "both bad" answers name no winner
  and are not scored (they are counted, as ``n_unscored``). The 95% interval is
  Wilson's score interval, with a ranking's share counting as a fractional
  success.
* **log-loss**: the binary cross-entropy of the model's probability that the
  judged winner wins, given that the pair was decided (a ranking: the mean over
  its implied pairs), in nats; a model that knows nothing scores ln 2 ≈ 0.693.
  Probabilities are clipped to [1e-7, 1 − 1e-7]. The 95% interval is the mean ± a
  Student-t quantile times its standard error.
* **ECE**: expected calibration error over the decided pairs (10 bins).

Ties are left out of both figures because what a tie means differs between the
likelihoods a study may choose (Davidson, Rao–Kupper, soft labels), while "which of
the two wins" means the same under all of them, so the figures compare across
model options. An ensemble is scored by its members' averaged probabilities.
numpy only at import; torch is imported when a model's probabilities are computed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from models_runtime.metrics import expected_calibration_error
from models_runtime.preferences import LikelihoodConfig, PreferenceData

__all__ = [
    "HeldoutScore",
    "decided_pairs",
    "evaluation_draw",
    "score_heldout",
    "t_quantile_975",
    "wilson_interval",
]

_Z95 = 1.959963984540054
_EPS = 1e-7
_TIE_TOL = 1e-6


def evaluation_draw(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (the first 8 bytes of its SHA-256): a
    judgment whose draw is below the study's evaluation rate is an evaluation
    judgment. The same key always draws the same number, on every machine."""
    digest = hashlib.sha256(f"prefloop-evaluation\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def wilson_interval(successes: float, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``successes / n`` (``nan``s when
    ``n`` is 0). Unlike the normal interval it stays inside [0, 1] and does not
    collapse to a point at 0 or n successes."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1.0 - p) / n + z * z / (4.0 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom, by the
    Cornish–Fisher expansion around the normal quantile (within 0.1% of the exact
    value from 5 degrees of freedom on; scipy is not a runtime dependency)."""
    if df < 1:
        return float("nan")
    z = _Z95
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160.0
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class HeldoutScore:
    """A model's figures on the evaluation judgments (see the module docstring).
    ``n`` counts the judgments scored; ``n_unscored`` those without a winner;
    figures are ``nan`` when nothing was scored (intervals need two judgments)."""

    n: int
    n_unscored: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    log_loss: float
    log_loss_low: float
    log_loss_high: float
    ece: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def decided_pairs(data: PreferenceData, owner: np.ndarray) -> tuple[PreferenceData, np.ndarray]:
    """The decided pairs of ``data`` (its pairs with a winner, and every pair a
    ranking implies) as pair data with the outcome 1 when the left item won, and the
    ``owner`` (e.g. judgment id) of each, taken from ``owner[j]`` of judgment ``j``
    (pairs first, then rankings)."""
    owner = np.asarray(owner)
    if owner.shape[0] != len(data):
        raise ValueError(f"owner has {owner.shape[0]} entries for {len(data)} judgments")
    decided = (np.abs(data.pair_outcome - 0.5) > _TIE_TOL) & ~data.pair_both_bad
    left = [data.pair_left[decided]]
    right = [data.pair_right[decided]]
    outcome = [data.pair_outcome[decided]]
    owners = [owner[: data.n_pairs][decided]]
    for r, (row, k) in enumerate(zip(data.rank_items, data.rank_n_ranked, strict=True)):
        row = row[row >= 0]
        hi, lo = np.triu_indices(row.size, k=1)
        keep = hi < k
        left.append(row[hi[keep]])
        right.append(row[lo[keep]])
        outcome.append(np.ones(int(keep.sum()), dtype=np.float32))
        owners.append(np.full(int(keep.sum()), owner[data.n_pairs + r]))
    pairs = PreferenceData.from_pairs(
        np.concatenate(left).astype(np.int64),
        np.concatenate(right).astype(np.int64),
        np.concatenate(outcome).astype(np.float32),
    )
    return pairs, np.concatenate(owners)


def _prob_left_wins(
    scores: np.ndarray, pairs: PreferenceData, likelihood: LikelihoodConfig, tie_rate: float, flip_rate: Any
):
    """P(left wins | the pair is decided) under ``likelihood`` (its tie parameter set
    from ``tie_rate``, the training judgments' tie share, and its label flips, at
    ``flip_rate`` when it learns them), for ``scores`` ``(N,)`` or the members'
    ``(M, N)`` averaged."""
    import torch

    from models_runtime.likelihood import PreferenceLikelihood

    tensors = pairs.to_tensors("cpu")._replace(tie_rate=tie_rate)
    with torch.no_grad():
        p_left, _, p_right = PreferenceLikelihood(likelihood, flip_rate=flip_rate).pair_probabilities(
            torch.from_numpy(np.asarray(scores, dtype=np.float64)), tensors
        )
    p_left, p_right = p_left.numpy(), p_right.numpy()
    if p_left.ndim == 2:
        p_left, p_right = p_left.mean(axis=0), p_right.mean(axis=0)
    return p_left / np.maximum(p_left + p_right, 1e-300)


def _fit_likelihood(likelihood: LikelihoodConfig | None, flip_rate: Any) -> LikelihoodConfig:
    """The likelihood a fitted model's probabilities come from: the default one
    when none is given, and no label flips when neither it nor the model has a rate."""
    likelihood = likelihood if likelihood is not None else LikelihoodConfig()
    if likelihood.label_flip_rate is None and flip_rate is None:
        likelihood = replace(likelihood, label_flip_rate=0.0)
    return likelihood


def answer_probabilities(
    scores: np.ndarray,
    data: PreferenceData,
    owner: np.ndarray,
    *,
    likelihood: LikelihoodConfig | None = None,
    flip_rate: Any = None,
    tie_rate: float = float("nan"),
) -> tuple[np.ndarray, np.ndarray]:
    """How likely the model finds each judgment's answer: for every owner in
    ``owner`` (as :func:`score_heldout` takes it) with a decided pair, the
    smallest probability the model gives any ordering the judgment states
    (a pair's winner over its loser; each pair a ranking orders). Returns
    ``(owners, probability)``; ties and "both bad" answers state no ordering
    and are left out. Probabilities as :func:`score_heldout` computes them."""
    pairs, pair_owner = decided_pairs(data, np.asarray(owner))
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.asarray(owner).dtype), np.zeros(0, dtype=np.float64)
    q = _prob_left_wins(scores, pairs, _fit_likelihood(likelihood, flip_rate), tie_rate, flip_rate)
    owners, which = np.unique(pair_owner, return_inverse=True)
    least = np.full(owners.size, np.inf)
    np.minimum.at(least, which, q)
    return owners, least


def score_heldout(
    scores: np.ndarray,
    data: PreferenceData,
    owner: np.ndarray,
    *,
    likelihood: LikelihoodConfig | None = None,
    flip_rate: Any = None,
    tie_rate: float = float("nan"),
    n_unscored_extra: int = 0,
) -> HeldoutScore:
    """Score utilities ``scores`` (``(N,)``, or ``(M, N)`` for an ensemble's members)
    on the evaluation judgments ``data`` (indices into ``scores``' last axis), where
    ``owner[j]`` names the judgment that row ``j`` came from (pairs first, then
    rankings; rows sharing an owner are one observation). ``likelihood`` and
    ``tie_rate`` turn score differences into probabilities as the fit did (the
    training judgments' tie share fixes the tie parameter); when ``likelihood``
    learns the label-flip rate, ``flip_rate`` is the fitted model's (its
    ``flip_rate``: a float, or one per member), and without one labels never flip;
    ``n_unscored_extra`` adds evaluation judgments that left no row in ``data``."""
    likelihood = _fit_likelihood(likelihood, flip_rate)
    owner = np.asarray(owner)
    pairs, pair_owner = decided_pairs(data, owner)
    unscored = len(np.setdiff1d(np.unique(owner), np.unique(pair_owner))) + int(n_unscored_extra)
    if len(pairs) == 0:
        nan = float("nan")
        return HeldoutScore(0, unscored, nan, nan, nan, nan, nan, nan, nan)
    q = _prob_left_wins(scores, pairs, likelihood, tie_rate, flip_rate)
    y = pairs.pair_outcome.astype(np.float64)
    correct = np.where(q == 0.5, 0.5, ((q > 0.5) == (y > 0.5)).astype(np.float64))
    qc = np.clip(q, _EPS, 1.0 - _EPS)
    bce = -(y * np.log(qc) + (1.0 - y) * np.log1p(-qc))
    owners, which = np.unique(pair_owner, return_inverse=True)
    count = np.bincount(which).astype(np.float64)
    per_acc = np.bincount(which, weights=correct) / count
    per_ll = np.bincount(which, weights=bce) / count
    n = int(owners.size)
    acc_low, acc_high = wilson_interval(float(per_acc.sum()), n)
    ll = float(per_ll.mean())
    if n >= 2:
        half = t_quantile_975(n - 1) * float(per_ll.std(ddof=1)) / math.sqrt(n)
        ll_low, ll_high = max(0.0, ll - half), ll + half
    else:
        ll_low = ll_high = float("nan")
    return HeldoutScore(
        n=n,
        n_unscored=unscored,
        accuracy=float(per_acc.mean()),
        accuracy_low=acc_low,
        accuracy_high=acc_high,
        log_loss=ll,
        log_loss_low=ll_low,
        log_loss_high=ll_high,
        ece=expected_calibration_error(q, y),
    )
