"""Uniformly random pairs within a group: the baseline and the cold start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from activelearn.strategies.base import (
    ScoredList,
    ScoredPair,
    SelectionInput,
    group_members,
    n_subsets,
    ordered,
)


@dataclass
class RandomStrategy:
    """Pick a group with probability proportional to its number of open pairs,
    then a uniformly random open pair inside it.

    Cost: O(N) to group the items plus a few draws per pair. Needs no model,
    so it is also the fallback before the first reward model exists.
    """

    max_tries_per_pair: int = 50
    name: ClassVar[str] = "random"
    lists_in_random_order: ClassVar[bool] = True

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        groups = group_members(inp.groups)
        if not groups or n <= 0:
            return []
        sizes = np.array([g.size for g in groups], dtype=np.float64)
        total_pairs = sizes * (sizes - 1) / 2
        taken: set[tuple[int, int]] = set()
        chosen: list[ScoredPair] = []
        open_pairs = total_pairs.sum() - len(inp.excluded)
        tries = 0
        while len(chosen) < n and tries < n * self.max_tries_per_pair and open_pairs > len(taken):
            tries += 1
            g = groups[rng.choice(len(groups), p=total_pairs / total_pairs.sum())]
            i, j = rng.choice(g, size=2, replace=False)
            pair = ordered(int(i), int(j))
            if pair in inp.excluded or pair in taken:
                continue
            taken.add(pair)
            chosen.append(ScoredPair(i=pair[0], j=pair[1], score=0.0, propensity=1.0 / total_pairs.sum()))
        if len(chosen) < n:
            # Rejection sampling stalls when nearly every pair is taken: finish
            # by enumerating what is left (only reached for small pools).
            chosen.extend(self._enumerate_rest(groups, inp.excluded | taken, n - len(chosen), rng))
        return chosen

    @staticmethod
    def _enumerate_rest(
        groups: list[np.ndarray], excluded: set | frozenset, n: int, rng: np.random.Generator
    ) -> list[ScoredPair]:
        rest: list[tuple[int, int]] = []
        for g in groups:
            if g.size > 200:
                continue
            for a in range(g.size):
                for b in range(a + 1, g.size):
                    pair = ordered(int(g[a]), int(g[b]))
                    if pair not in excluded:
                        rest.append(pair)
        if not rest:
            return []
        picks = rng.permutation(len(rest))[:n]
        return [ScoredPair(i=rest[k][0], j=rest[k][1], score=0.0, propensity=1.0 / len(rest)) for k in picks]

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """K distinct items of the group drawn uniformly."""
        items = rng.choice(members, size=k, replace=False)
        return ScoredList(tuple(int(i) for i in items), 0.0, 1.0 / n_subsets(members.size, k))
