"""Least-compared pairs: spread the judgments evenly over the items."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from activelearn.strategies.base import (
    ScoredList,
    ScoredPair,
    SelectionInput,
    group_members,
    ordered,
)

# Groups larger than this search a shortlist of their least-compared items first.
_SHORTLIST = 64


@dataclass
class LeastComparedStrategy:
    """Pair the items that have been compared least, within each group.

    A baseline that needs no model: every item gets judged before any item
    gets judged twice, as far as the pool allows. Each group offers its two
    least-compared items (random tie-break); pairs are taken cheapest first by
    the sum of their items' counts, and the counts are updated as pairs are
    chosen, so a batch spreads over groups and items. Score: 1 / (1 + c_i + c_j).
    Cost: O(N log N) plus O(group size) per chosen pair.
    """

    name: ClassVar[str] = "least_compared"

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        groups = group_members(inp.groups)
        if not groups or n <= 0:
            return []
        counts = (
            np.zeros(inp.n_items, dtype=np.float64) if inp.counts is None else np.asarray(inp.counts, np.float64).copy()
        )
        taken: set[tuple[int, int]] = set()
        blocked = _Blocked(inp.excluded, taken)
        tiebreak = rng.random(inp.n_items)
        heap: list[tuple[float, float, int]] = []
        for g, members in enumerate(groups):
            best = self._best_pair(members, counts, tiebreak, blocked)
            if best is not None:
                heapq.heappush(heap, (best[0], float(tiebreak[members[0]]), g))
        chosen: list[ScoredPair] = []
        while heap and len(chosen) < n:
            cost, _, g = heapq.heappop(heap)
            best = self._best_pair(groups[g], counts, tiebreak, blocked)
            if best is None:
                continue
            if best[0] > cost:
                # Counts in this group changed since it was queued: requeue.
                heapq.heappush(heap, (best[0], float(tiebreak[groups[g][0]]), g))
                continue
            _, i, j = best
            taken.add((i, j))
            chosen.append(ScoredPair(i=i, j=j, score=1.0 / (1.0 + counts[i] + counts[j]), propensity=1.0))
            counts[i] += 1
            counts[j] += 1
            nxt = self._best_pair(groups[g], counts, tiebreak, blocked)
            if nxt is not None:
                heapq.heappush(heap, (nxt[0], float(tiebreak[groups[g][0]]), g))
        return chosen

    @staticmethod
    def _best_pair(
        members: np.ndarray, counts: np.ndarray, tiebreak: np.ndarray, excluded: _Blocked
    ) -> tuple[float, int, int] | None:
        if members.size > _SHORTLIST:
            # Only the least-compared items can form the cheapest pair: rank a
            # shortlist (O(group size)) and fall back to the whole group when every
            # pair among it is taken.
            group_counts = counts[members]
            # Counts are whole numbers, so adding half the random tie-break keeps
            # their order and breaks ties at random, as the full search does.
            split = np.argpartition(group_counts + 0.5 * tiebreak[members], _SHORTLIST)
            short = members[split[:_SHORTLIST]]
            found = LeastComparedStrategy._best_pair(short, counts, tiebreak, excluded)
            # Any pair with an item outside the shortlist costs at least this much.
            outside = float(group_counts[split[_SHORTLIST:]].min() + group_counts.min())
            if found is not None and found[0] <= outside:
                return found
        order = members[np.lexsort((tiebreak[members], counts[members]))]
        best: tuple[float, int, int] | None = None
        # Walk pairs in order of their count sum; the first open one wins. The
        # outer item only needs to range while it can still beat the best found.
        for a in range(order.size - 1):
            if best is not None and counts[order[a]] * 2 > best[0]:
                break
            for b in range(a + 1, order.size):
                cost = float(counts[order[a]] + counts[order[b]])
                if best is not None and cost >= best[0]:
                    break
                pair = ordered(int(order[a]), int(order[b]))
                if pair not in excluded:
                    best = (cost, *pair)
                    break
        return best

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """The group's K least-compared items (random tie-break)."""
        counts = np.zeros(inp.n_items) if inp.counts is None else np.asarray(inp.counts, dtype=np.float64)
        order = members[np.lexsort((rng.random(members.size), counts[members]))]
        items = order[:k]
        return ScoredList(tuple(int(i) for i in items), 1.0 / (1.0 + float(counts[items].sum())), 1.0)


@dataclass(frozen=True)
class _Blocked:
    """Pairs that may not be chosen: the input's excluded ones and this batch's."""

    excluded: frozenset[tuple[int, int]]
    taken: set[tuple[int, int]]

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return pair in self.excluded or pair in self.taken
