"""EUBO on the epistemic model's draws: the pair whose better response is
expected to be best (the expected utility of the best option; Lin et al. 2022,
"Preference Exploration for Efficient Bayesian Optimization with Multiple
Outcomes", and Astudillo et al. 2023, "qEUBO"). Ask about the pair whose
winner, once known, would be the best recommendation: after the answer the
model recommends the preferred response, and EUBO is the expected utility of
that recommendation under the current posterior.

The posterior is the joint draws ``SelectionInput.member_scores`` (the kernel
model's, or an ensemble's heads). For a pair (a, b), with the draws' means μ and
the spread θ of the difference f_a − f_b across draws, EUBO is computed as for
two jointly Gaussian utilities (the kernel model's posterior is a Laplace
approximation, a Gaussian):

    E[max(f_a, f_b)] = μ_a Φ(d) + μ_b Φ(−d) + θ φ(d),   d = (μ_a − μ_b) / θ

rather than as the draws' average maximum, which with 32 draws is noisy enough
to decide between close pairs by chance. Pairs are formed among each group's
``top_k`` items by optimistic utility (mean + spread): the best option of any
pair worth asking about is near the top, and a 50,000-item group then costs
O(N · M + G · top_k² · M), not O(N² · M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from activelearn.strategies.base import (
    ScoredList,
    ScoredPair,
    SelectionInput,
    best_pairs,
    group_members,
    member_scores_of,
    optimistic_top,
)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# The standard normal CDF elementwise (numpy has no erf, and scipy is not a runtime dependency).
_ndtr = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0)), otypes=[np.float64])


def expected_best(mean_a: np.ndarray, mean_b: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """E[max(f_a, f_b)] of jointly Gaussian utilities with means ``mean_a`` and
    ``mean_b`` whose difference has standard deviation ``spread`` (elementwise);
    where the spread is zero, the larger mean."""
    theta = np.maximum(spread, 1e-12)
    d = (mean_a - mean_b) / theta
    cdf = _ndtr(d)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * d * d)
    value = mean_a * cdf + mean_b * (1.0 - cdf) + theta * pdf
    return np.where(spread > 1e-12, value, np.maximum(mean_a, mean_b))


@dataclass
class EuboStrategy:
    """Within each group, all pairs among its ``top_k`` optimistic items, scored
    by EUBO; a batch takes the pairs of highest gain (EUBO minus the group's best
    posterior mean, so groups on different utility scales compare), with at most
    ``max_per_item`` pairs per item so the batch spreads over challengers.
    Score: that gain, in utility units. Deterministic given the draws:
    propensity 1."""

    top_k: int = 32
    max_per_item: int = 2
    name: ClassVar[str] = "eubo"

    def __post_init__(self) -> None:
        if self.top_k < 2 or self.max_per_item < 1:
            raise ValueError("top_k must be >= 2 and max_per_item >= 1")

    @staticmethod
    def _candidates(members: np.ndarray, g: np.ndarray, keep: int, rng: np.random.Generator) -> np.ndarray:
        """The ``keep`` most optimistic items of ``g`` (the spread computed only when some are left out)."""
        if g.size <= keep:
            return g
        return optimistic_top(members[:, g].mean(axis=0) + members[:, g].std(axis=0), g, keep, rng)

    @staticmethod
    def _pair_values(members: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(left, right, EUBO)`` of every pair of ``items`` (item indices)."""
        a, b = np.triu_indices(items.size, k=1)
        left, right = items[a], items[b]
        mean = members[:, items].mean(axis=0)
        spread = (members[:, left] - members[:, right]).std(axis=0)
        return left, right, expected_best(mean[a], mean[b], spread)

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        members = member_scores_of(inp, self.name)
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        gains: list[np.ndarray] = []
        for g in group_members(inp.groups):
            items = self._candidates(members, g, self.top_k, rng)
            left, right, value = self._pair_values(members, items)
            best_mean = float(members[:, g].mean(axis=0).max())
            lefts.append(left)
            rights.append(right)
            gains.append(value - best_mean)
        if not lefts or n <= 0:
            return []
        return best_pairs(
            np.concatenate(lefts), np.concatenate(rights), np.concatenate(gains), inp.excluded, n, self.max_per_item
        )

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """qEUBO grown greedily: the pair of highest EUBO among the group's
        ``top_k`` optimistic items, then each time the item that most raises the
        draws' average best utility of the list. Score: that average best minus
        the group's best posterior mean."""
        m = member_scores_of(inp, self.name)
        items = self._candidates(m, members, max(self.top_k, k), rng)  # a list longer than top_k still fills
        left, right, value = self._pair_values(m, items)
        first = int(np.argmax(value))
        picked = [int(left[first]), int(right[first])]
        best_so_far = np.maximum(m[:, picked[0]], m[:, picked[1]])
        while len(picked) < k:
            rest = np.array([x for x in items if int(x) not in picked])
            gain = np.maximum(m[:, rest], best_so_far[:, None]).mean(axis=0)
            choice = int(rest[int(np.argmax(gain))])
            picked.append(choice)
            best_so_far = np.maximum(best_so_far, m[:, choice])
        score = float(best_so_far.mean() - m[:, members].mean(axis=0).max())
        return ScoredList(tuple(picked), score, 1.0)
