"""Listwise variants: every strategy picks lists of K items for ranking tasks.

A list is built within one group (prompt) by the strategy's own ``select_list``,
each in its own terms:

* random: K distinct items drawn uniformly;
* least-compared: the K least-compared items;
* uncertainty: K neighbours in score order (the closest utilities);
* double Thompson sampling: K successive posterior draws, each adding its best item
  not yet in the list (a draw whose best is taken is redrawn, then falls back to its
  best remaining item);
* infomax: the most informative pair, then greedily the item with the most summed
  pairwise information with the items already listed;
* EUBO: the pair of highest EUBO, then greedily the item that most raises the
  draws' average best utility of the list (qEUBO grown one item at a time);
* APOHF: the greedy leader followed by its K − 1 challengers, each chosen by the
  gradient UCB rule with the previous ones fantasised into the design.

``SelectionInput.excluded`` may hold sorted item tuples of any length; a list whose
sorted items are excluded (already queued or judged) is not chosen again. Lists come
best first, except for a strategy with ``lists_in_random_order`` (random), whose
lists carry no score and come in random order.
"""

from __future__ import annotations

import numpy as np

from activelearn.strategies.base import ScoredList, SelectionInput, Strategy, group_members

__all__ = ["ScoredList", "select_lists"]


def select_lists(strategy: Strategy, inp: SelectionInput, n: int, k: int, rng: np.random.Generator) -> list[ScoredList]:
    """Up to ``n`` lists of ``k`` distinct items, each from one group, at most one
    list per group per call (so a batch spreads over prompts), best first."""
    if k < 2:
        raise ValueError(f"lists need at least two items, got k={k}")
    groups = [g for g in group_members(inp.groups) if g.size >= k]
    if not groups or n <= 0:
        return []
    lists: list[ScoredList] = []
    for members in groups:
        found = strategy.select_list(inp, members, k, rng)
        if found is not None and tuple(sorted(found.items)) not in inp.excluded:
            lists.append(found)
    if getattr(strategy, "lists_in_random_order", False):
        order = rng.permutation(len(lists))
        lists = [lists[i] for i in order]
    else:
        lists.sort(key=lambda item: -item.score)
    return lists[:n]
