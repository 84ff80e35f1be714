"""Evaluation metrics for pairwise preference predictions."""

from __future__ import annotations

import numpy as np

__all__ = ["log_loss", "pairwise_accuracy"]

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
