"""Strategies that read an epistemic reward model: double Thompson sampling and
infomax. Both take the per-member utilities of an epistemic model,
``SelectionInput.member_scores`` with shape ``(M, N)``: joint posterior draws of the
kernel model (the study default) or the heads of an anchored ensemble."""

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
    member_scores_of,
    optimistic_top,
    ordered,
)


def _preference_disagreement(members: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between the outcome of each pair ``(i, j)`` and the
    ensemble member that generated it (BALD): entropy of the member-averaged
    Bradley–Terry probability minus the average entropy of the members' own,
    computed in the members' dtype (float32 is several times quicker: its exp
    and log vectorise)."""
    p = 1.0 / (1.0 + np.exp(-(members[:, i] - members[:, j])))
    tiny = 1e-12 if members.dtype == np.float64 else 1e-6  # 1 − tiny must differ from 1
    p = np.clip(p, tiny, 1 - tiny)

    def entropy(q: np.ndarray) -> np.ndarray:
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    return entropy(p.mean(axis=0)) - entropy(p).mean(axis=0)


@dataclass
class DoubleThompsonStrategy:
    """Double Thompson sampling (Dwaracherla et al. 2024, "Efficient Exploration
    for LLMs"): draw an ensemble member and take its best item, draw another and
    take its best; redraw the second up to ``max_redraws`` times while both agree.

    When the members keep agreeing (the posterior is sure about the best item),
    the second item is the best *other* item under the second draw (top-two
    Thompson sampling) rather than a random one, so the comparison still tests
    the leader against its most plausible challenger. Each group (prompt) gets
    one pair per round; a batch takes groups in order of how much the members
    disagree about the drawn pair (BALD, the pair's score), and runs further
    rounds (up to ``max_rounds``, by default as many as the batch needs) when it
    needs more pairs than there are groups. Propensity: the
    share of members whose best item is the pair's first item. Cost per pair:
    O(group size · redraws).
    """

    max_redraws: int = 8
    max_rounds: int | None = None
    name: ClassVar[str] = "double_ts"

    def __post_init__(self) -> None:
        if self.max_redraws < 0 or (self.max_rounds is not None and self.max_rounds < 1):
            raise ValueError("max_redraws must be >= 0 and max_rounds >= 1 (or None: as many as the batch needs)")

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        members = member_scores_of(inp, "double_ts")
        groups = group_members(inp.groups)
        taken: set[tuple[int, int]] = set()
        chosen: list[ScoredPair] = []
        # Each round adds at least one pair or ends the loop, so n rounds suffice.
        for _ in range(n if self.max_rounds is None else self.max_rounds):
            if len(chosen) >= n:
                break
            round_picks: list[ScoredPair] = []
            for g in groups:
                pick = self._draw_pair(members[:, g], g, inp.excluded, taken, rng)
                if pick is not None:
                    round_picks.append(pick)
            if not round_picks:
                break
            round_picks.sort(key=lambda p: -p.score)
            for pick in round_picks[: n - len(chosen)]:
                taken.add((pick.i, pick.j))
                chosen.append(pick)
        return chosen

    def _draw_pair(
        self,
        group_scores: np.ndarray,
        items: np.ndarray,
        excluded: frozenset[tuple[int, int]],
        taken: set[tuple[int, int]],
        rng: np.random.Generator,
    ) -> ScoredPair | None:
        m = group_scores.shape[0]

        def is_open(a: int, b: int) -> bool:
            pair = ordered(int(items[a]), int(items[b]))
            return pair not in excluded and pair not in taken

        first = int(np.argmax(group_scores[rng.integers(m)]))
        second_row = group_scores[rng.integers(m)]
        second = int(np.argmax(second_row))
        for _ in range(self.max_redraws):
            if second != first and is_open(first, second):
                break
            second_row = group_scores[rng.integers(m)]
            second = int(np.argmax(second_row))
        if second == first or not is_open(first, second):
            # Top-two fallback: the best open challenger under the last draw.
            order = np.argsort(-second_row, kind="stable")
            second = next((int(b) for b in order if b != first and is_open(first, int(b))), -1)
            if second < 0:
                # Every pair with this leader is taken: try the group's other items.
                return self._any_open(group_scores, items, excluded, taken)
        i, j = int(items[first]), int(items[second])
        score = float(_preference_disagreement(group_scores, np.array([first]), np.array([second]))[0])
        leaders = np.argmax(group_scores, axis=1)
        propensity = float(np.mean(leaders == first))
        a, b = ordered(i, j)
        return ScoredPair(i=a, j=b, score=score, propensity=propensity)

    @staticmethod
    def _any_open(
        group_scores: np.ndarray,
        items: np.ndarray,
        excluded: frozenset[tuple[int, int]],
        taken: set[tuple[int, int]],
    ) -> ScoredPair | None:
        mean = group_scores.mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        for x in range(order.size):
            for y in range(x + 1, order.size):
                pair = ordered(int(items[order[x]]), int(items[order[y]]))
                if pair not in excluded and pair not in taken:
                    score = float(_preference_disagreement(group_scores, np.array([order[x]]), np.array([order[y]]))[0])
                    return ScoredPair(i=pair[0], j=pair[1], score=score, propensity=None)
        return None

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """K successive posterior draws, each adding its best item not yet listed
        (a draw whose best is taken is redrawn, then falls back to its best
        remaining item). Propensity: the share of members whose best is the first."""
        m = member_scores_of(inp, self.name)[:, members]
        picked: list[int] = []
        leaders = np.argmax(m, axis=1)
        propensity = 1.0
        for _ in range(k):
            row = m[rng.integers(m.shape[0])]
            for _ in range(self.max_redraws):
                if int(np.argmax(row)) not in picked:
                    break
                row = m[rng.integers(m.shape[0])]
            choice = next(int(c) for c in np.argsort(-row, kind="stable") if int(c) not in picked)
            if not picked:
                propensity = float(np.mean(leaders == choice))
            picked.append(choice)
        idx = np.array(picked)
        a, b = np.triu_indices(k, k=1)
        info = float(_preference_disagreement(m, idx[a], idx[b]).sum())
        return ScoredList(tuple(int(members[i]) for i in picked), info, propensity)


@dataclass
class InfomaxStrategy:
    """The pairs whose outcome the ensemble members disagree on most: maximal
    mutual information between the answer and the model (BALD; Houlsby et al.
    2011), with each member's answer distribution from Bradley–Terry.

    Within a group, candidate pairs are all pairs among its ``top_k`` items by
    optimistic utility (mean + spread), so a 50,000-item group costs
    O(N + top_k² · M) rather than O(N² · M), and the pairs it asks about are
    the ones that can change which item is best. ``max_per_item`` caps how
    often one item appears in a batch. Score: the mutual information in nats.
    """

    top_k: int = 32
    max_per_item: int = 2
    name: ClassVar[str] = "infomax"

    def __post_init__(self) -> None:
        if self.top_k < 2 or self.max_per_item < 1:
            raise ValueError("top_k must be >= 2 and max_per_item >= 1")

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        members = member_scores_of(inp, "infomax")
        optimistic = members.mean(axis=0) + members.std(axis=0)
        lefts: list[np.ndarray] = []
        rights: list[np.ndarray] = []
        for g in group_members(inp.groups):
            g = optimistic_top(optimistic[g], g, self.top_k, rng)
            a, b = np.triu_indices(g.size, k=1)
            lefts.append(g[a])
            rights.append(g[b])
        if not lefts or n <= 0:
            return []
        left, right = np.concatenate(lefts), np.concatenate(rights)
        # In float32: with 32 members and 500 prompts this is 8 million
        # probabilities, most of a 50,000-candidate selection's time in float64.
        info = _preference_disagreement(members.astype(np.float32), left, right).astype(np.float64)
        return best_pairs(left, right, info, inp.excluded, n, self.max_per_item)

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """The most informative pair among the group's ``top_k`` optimistic items,
        grown greedily by the item with the most summed pairwise information with
        those already listed."""
        m = member_scores_of(inp, self.name)
        top_k = max(self.top_k, k)
        if members.size > top_k:
            members = optimistic_top(m[:, members].mean(axis=0) + m[:, members].std(axis=0), members, top_k, rng)
        a, b = np.triu_indices(members.size, k=1)
        info = np.zeros((members.size, members.size))
        info[a, b] = info[b, a] = _preference_disagreement(m, members[a], members[b])
        first = int(np.argmax(info[a, b]))
        picked = [int(a[first]), int(b[first])]
        while len(picked) < k:
            gain = info[:, picked].sum(axis=1)
            gain[picked] = -np.inf
            picked.append(int(np.argmax(gain)))
        total = float(sum(info[x, y] for i, x in enumerate(picked) for y in picked[i + 1 :]))
        return ScoredList(tuple(int(members[i]) for i in picked), total, 1.0)
