"""Listwise variants: every strategy picks lists of K items for ranking tasks.

A list is built by successive choice within one group (prompt), each strategy in
its own terms:

* random: K distinct items drawn uniformly;
* least-compared: the K least-compared items;
* uncertainty: K neighbours in score order (the closest utilities);
* double Thompson sampling: K successive posterior draws, each adding its best item
  not yet in the list (a draw whose best is taken is redrawn, then falls back to its
  best remaining item);
* infomax: the most informative pair, then greedily the item with the most summed
  pairwise information with the items already listed;
* APOHF: the greedy leader followed by its K − 1 challengers, each chosen by the
  gradient UCB rule with the previous ones fantasised into the design.

``SelectionInput.excluded`` may hold sorted item tuples of any length; a list whose
sorted items are excluded (already queued or judged) is not chosen again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from activelearn.strategies.base import SelectionInput, Strategy, StrategyName, group_members
from activelearn.strategies.ensemble_based import _members, _preference_disagreement

__all__ = ["ScoredList", "select_lists"]


@dataclass(frozen=True)
class ScoredList:
    """One chosen list: item indices in the order the strategy picked them (not a
    ranking), how informative it looked, and the probability of the choice."""

    items: tuple[int, ...]
    score: float
    propensity: float | None = None


def select_lists(strategy: Strategy, inp: SelectionInput, n: int, k: int, rng: np.random.Generator) -> list[ScoredList]:
    """Up to ``n`` lists of ``k`` distinct items, each from one group, at most one
    list per group per call (so a batch spreads over prompts), best first."""
    if k < 2:
        raise ValueError(f"lists need at least two items, got k={k}")
    groups = [g for g in group_members(inp.groups) if g.size >= k]
    if not groups or n <= 0:
        return []
    build = _BUILDERS[strategy.name]
    lists: list[ScoredList] = []
    for members in groups:
        found = build(strategy, inp, members, k, rng)
        if found is not None and tuple(sorted(found.items)) not in inp.excluded:
            lists.append(found)
    if strategy.name == StrategyName.RANDOM:
        order = rng.permutation(len(lists))
        lists = [lists[i] for i in order]
    else:
        lists.sort(key=lambda item: -item.score)
    return lists[:n]


def _random(strategy, inp, members, k, rng) -> ScoredList:
    items = rng.choice(members, size=k, replace=False)
    n_sets = _combinations(members.size, k)
    return ScoredList(tuple(int(i) for i in items), 0.0, 1.0 / n_sets)


def _least_compared(strategy, inp, members, k, rng) -> ScoredList:
    counts = np.zeros(inp.n_items) if inp.counts is None else np.asarray(inp.counts, dtype=np.float64)
    order = members[np.lexsort((rng.random(members.size), counts[members]))]
    items = order[:k]
    return ScoredList(tuple(int(i) for i in items), 1.0 / (1.0 + float(counts[items].sum())), 1.0)


def _uncertainty(strategy, inp, members, k, rng) -> ScoredList:
    if inp.scores is None:
        raise ValueError("the uncertainty strategy needs model scores; use random before the first model")
    scores = np.asarray(inp.scores, dtype=np.float64)
    ranked = members[np.lexsort((rng.random(members.size), scores[members]))]
    s = scores[ranked]
    # The window of k consecutive items with the smallest utility range.
    ranges = s[k - 1 :] - s[: s.size - k + 1]
    start = int(np.argmin(ranges))
    items = ranked[start : start + k]
    return ScoredList(tuple(int(i) for i in items), float(np.exp(-ranges[start])), 1.0)


def _double_ts(strategy, inp, members, k, rng) -> ScoredList:
    m = _members(inp, "double_ts")[:, members]
    picked: list[int] = []
    leaders = np.argmax(m, axis=1)
    propensity = 1.0
    for _ in range(k):
        row = m[rng.integers(m.shape[0])]
        for _ in range(getattr(strategy, "max_redraws", 8)):
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


def _infomax(strategy, inp, members, k, rng) -> ScoredList:
    m = _members(inp, "infomax")
    top_k = max(getattr(strategy, "top_k", 32), k)
    if members.size > top_k:
        optimistic = m[:, members].mean(axis=0) + m[:, members].std(axis=0)
        members = members[np.argsort(-(optimistic + rng.random(members.size) * 1e-9))[:top_k]]
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


def _apohf(strategy, inp, members, k, rng) -> ScoredList | None:
    # One group, k − 1 pairs: the leader against successive challengers, each pair
    # fantasised into the design before the next is chosen (APOHF's batch rule).
    # Every other item goes to a group of its own, which offers no pair.
    only = np.arange(1, inp.n_items + 1, dtype=np.int64)
    only[members] = 0
    single = replace(inp, groups=only)
    pairs = replace(strategy, max_per_item=None).select(single, k - 1, rng)
    items: list[int] = []
    for pair in pairs:
        for item in (pair.i, pair.j):
            if item not in items:
                items.append(item)
    if len(items) < k:
        return None
    leader = max(items[:2], key=lambda i: float(inp.scores[i]))
    ordered_items = [leader, *[i for i in items if i != leader]][:k]
    return ScoredList(tuple(ordered_items), float(sum(p.score for p in pairs)), 1.0)


def _combinations(n: int, k: int) -> float:
    from math import comb

    return float(comb(n, k))


_BUILDERS = {
    StrategyName.RANDOM: _random,
    StrategyName.LEAST_COMPARED: _least_compared,
    StrategyName.UNCERTAINTY: _uncertainty,
    StrategyName.DOUBLE_TS: _double_ts,
    StrategyName.INFOMAX: _infomax,
    StrategyName.APOHF: _apohf,
}
