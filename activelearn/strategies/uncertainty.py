"""Uncertainty sampling: the pairs whose predicted preference is closest to 50/50."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from activelearn.strategies.base import (
    ScoredList,
    ScoredPair,
    SelectionInput,
    best_pairs,
    group_members,
)


@dataclass
class UncertaintyStrategy:
    """Choose the open pairs with the smallest predicted score gap.

    Under Bradley–Terry, P(i ≻ j) = σ(s_i − s_j), so the pairs nearest 0.5 are
    the ones with the closest scores, and in a group sorted by score those are
    neighbours within a small ``window``. That keeps the cost at
    O(N log N + N·window) instead of O(N²) pairs. The score reported is
    1 − 2·|P − 0.5| (1 = a coin flip). ``max_per_item`` caps how often one item
    appears in a batch, so a batch spreads over many prompts.
    """

    window: int = 4
    max_per_item: int = 1
    name: ClassVar[str] = "uncertainty"

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        if inp.scores is None:
            raise ValueError("the uncertainty strategy needs model scores; use random before the first model")
        scores = np.asarray(inp.scores, dtype=np.float64)
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        for members in group_members(inp.groups):
            # Random tie-breaking keeps equal scores from always pairing the same way.
            jitter = rng.random(members.size) * 1e-9
            ranked = members[np.lexsort((jitter, scores[members]))]
            for offset in range(1, min(self.window, ranked.size - 1) + 1):
                lefts.append(ranked[:-offset])
                rights.append(ranked[offset:])
        if not lefts or n <= 0:
            return []
        left = np.concatenate(lefts)
        right = np.concatenate(rights)
        gap = np.abs(scores[left] - scores[right])
        prob = 1.0 / (1.0 + np.exp(-gap))
        informativeness = 1.0 - 2.0 * np.abs(prob - 0.5)

        return best_pairs(left, right, informativeness, inp.excluded, n, self.max_per_item)

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """K neighbours in utility: the window of K consecutive items (in score
        order) with the smallest utility range."""
        if inp.scores is None:
            raise ValueError("the uncertainty strategy needs model scores; use random before the first model")
        scores = np.asarray(inp.scores, dtype=np.float64)
        ranked = members[np.lexsort((rng.random(members.size), scores[members]))]
        s = scores[ranked]
        ranges = s[k - 1 :] - s[: s.size - k + 1]
        start = int(np.argmin(ranges))
        items = ranked[start : start + k]
        return ScoredList(tuple(int(i) for i in items), float(np.exp(-ranges[start])), 1.0)
