"""Helpers every strategy shares."""

from __future__ import annotations

import numpy as np

from activelearn.strategies import ScoredPair
from activelearn.strategies.base import diversify


def test_diversify_drops_near_duplicate_pairs() -> None:
    x = np.eye(4, dtype=np.float32)
    x = np.vstack([x, x[0], x[1]])  # items 4, 5 duplicate items 0, 1
    picks = [ScoredPair(0, 1, 1.0), ScoredPair(0, 4, 0.9), ScoredPair(4, 5, 0.8), ScoredPair(2, 3, 0.7)]
    kept = diversify(picks, x, 3)
    # (0, 4) compares a response with its copy; (4, 5) repeats the question (0, 1).
    assert [(p.i, p.j) for p in kept] == [(0, 1), (2, 3)]
    assert diversify(picks, None, 2) == picks[:2]
