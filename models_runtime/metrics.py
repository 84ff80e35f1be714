"""Evaluation metrics: pairwise accuracy, log-loss and calibration of preference
predictions; rank correlations of fitted against known utilities (simulation)."""

from __future__ import annotations

import numpy as np

__all__ = ["expected_calibration_error", "fit_metrics", "kendall_tau", "log_loss", "pairwise_accuracy", "spearman_rho"]

# Outcomes this close to 0.5 are ties; float32 storage can perturb an exact 0.5 slightly.
_TIE_TOL = 1e-6


def _as_pair(prob_left: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob_left, dtype=np.float64).reshape(-1)
    y = np.asarray(outcome, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"prob_left and outcome must have the same length, got {p.size} and {y.size}")
    return p, y


def pairwise_accuracy(prob_left: np.ndarray, outcome: np.ndarray) -> float:
    """Fraction of decided judgments whose winner the model predicts, where the predicted
    winner is the left item when ``prob_left > 0.5``. Ties (outcome 0.5) are excluded;
    a prediction of exactly 0.5 counts as half right because it expresses no preference.
    Returns ``nan`` when there are no decided judgments."""
    p, y = _as_pair(prob_left, outcome)
    decided = np.abs(y - 0.5) > _TIE_TOL
    if not decided.any():
        return float("nan")
    p, y = p[decided], y[decided]
    correct = np.where(p == 0.5, 0.5, ((p > 0.5) == (y > 0.5)).astype(np.float64))
    return float(correct.mean())


def log_loss(prob_left: np.ndarray, outcome: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy between predicted ``prob_left`` and the (possibly soft)
    ``outcome``, with probabilities clipped to ``[eps, 1 - eps]`` so a single confident
    mistake cannot make the loss infinite. Returns ``nan`` for empty input."""
    p, y = _as_pair(prob_left, outcome)
    if p.size == 0:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def expected_calibration_error(prob_left: np.ndarray, outcome: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of the predicted winner on decided judgments: the
    confidence ``max(p, 1 - p)`` is binned into ``n_bins`` equal-width bins over
    [0.5, 1], and the bins' gaps between mean confidence and the share of correct
    predictions are averaged, weighted by bin size. Ties are excluded; ``nan`` when
    nothing is decided."""
    p, y = _as_pair(prob_left, outcome)
    decided = np.abs(y - 0.5) > _TIE_TOL
    if not decided.any():
        return float("nan")
    p, won = p[decided], y[decided] > 0.5
    conf = np.maximum(p, 1.0 - p)
    correct = ((p > 0.5) == won).astype(np.float64)
    bins = np.minimum(((conf - 0.5) * 2 * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    filled = counts > 0
    gaps = np.abs(conf_sum[filled] - correct_sum[filled]) / counts[filled]
    return float((gaps * counts[filled]).sum() / counts.sum())


def _ranks(x: np.ndarray) -> np.ndarray:
    # Average ranks (1-based), ties sharing the mean of their positions.
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _as_vectors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"inputs must have the same length, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("inputs contain NaN or infinite values")
    return x, y


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (average ranks for ties);
    ``nan`` when either is constant or shorter than 2."""
    x, y = _as_vectors(a, b)
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x) - (x.size + 1) / 2.0, _ranks(y) - (y.size + 1) / 2.0
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b of two score vectors (tie-corrected), by direct pair counting in
    row blocks, O(n²) time and O(n · block) memory; ``nan`` when either is constant or
    shorter than 2."""
    x, y = _as_vectors(a, b)
    n = x.size
    if n < 2:
        return float("nan")
    concordance = 0.0
    tied_x = tied_y = 0
    block = max(1, 4_000_000 // n)
    for start in range(0, n, block):
        sx = np.sign(x[start : start + block, None] - x[None, :])
        sy = np.sign(y[start : start + block, None] - y[None, :])
        concordance += float((sx * sy).sum())
        tied_x += int((sx == 0).sum())
        tied_y += int((sy == 0).sum())
    # Each unordered pair was counted twice; the diagonal adds n ties to each side.
    pairs = n * (n - 1)
    denom = np.sqrt(float(pairs - (tied_x - n)) * float(pairs - (tied_y - n)))
    return float(concordance / denom) if denom > 0 else float("nan")


def fit_metrics(
    nll: np.ndarray,
    prob_left: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    train_idx: np.ndarray,
    hold_idx: np.ndarray,
) -> dict[str, float]:
    """The standard metrics of a fit: ``train_log_loss`` and ``heldout_log_loss``
    (weighted mean of the per-judgment ``nll``, judgments numbered pairs first),
    ``heldout_accuracy`` and ``heldout_ece`` (held-out decided pairs, from
    ``prob_left``, the probability that the left item wins given that the pair was
    decided), ``n_train`` and ``n_heldout``. Values without data are ``nan``."""
    nll = np.asarray(nll, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)

    def weighted_mean(idx: np.ndarray) -> float:
        w = weight[idx]
        return float((nll[idx] * w).sum() / w.sum()) if idx.size and w.sum() > 0 else float("nan")

    hold_pairs = hold_idx[hold_idx < np.asarray(prob_left).shape[0]]
    decided = (np.asarray(prob_left)[hold_pairs], np.asarray(outcome)[hold_pairs])
    return {
        "heldout_accuracy": pairwise_accuracy(*decided) if hold_pairs.size else float("nan"),
        "heldout_log_loss": weighted_mean(hold_idx),
        "heldout_ece": expected_calibration_error(*decided) if hold_pairs.size else float("nan"),
        "train_log_loss": weighted_mean(train_idx),
        "n_train": float(train_idx.size),
        "n_heldout": float(hold_idx.size),
    }
