"""The strategy interface, its value types and the helpers strategies share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from math import comb
from typing import ClassVar, Protocol

import numpy as np


class GradientSource(Protocol):
    """Per-item gradient features ``g(x) = ∂f(x; θ)/∂θ`` of the reward model and
    the diagonal of its design matrix ``λI + Σ_judged (g(a) − g(b))²``, as APOHF
    needs them. Features come in chunks so no ``N × p`` matrix is ever held."""

    @property
    def dim(self) -> int: ...

    @property
    def design_diag(self) -> np.ndarray: ...

    def chunks(self, items: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(item indices, (rows, dim) gradient features)`` covering ``items``."""
        ...

    # Optional: ``bonuses(items, refs, inv_diag) -> np.ndarray | None`` giving
    # ``sqrt(Σ_k (g_k(item) − g_k(ref))² · inv_diag_k)`` directly (None when the
    # source cannot); APOHF uses it for its full passes when present.


@dataclass(frozen=True)
class SelectionInput:
    """What a strategy sees: items, their groups and the current model's view.

    ``groups[i]`` is the group of item ``i`` (its prompt); only items of one
    group are ever compared. ``scores`` are the reward model's utilities, or
    None before the first model exists; ``member_scores`` ``(M, N)`` the
    utilities of each member when the model is an ensemble; ``gradients`` the
    model's gradient features when it is a single head. ``counts[i]`` is how
    many queued or judged comparisons item ``i`` is in. ``excluded`` holds pairs
    ``(i, j)`` with ``i < j`` that are already queued or judged (in a listwise
    study, sorted lists of any length; pair strategies ignore those).
    """

    groups: np.ndarray
    scores: np.ndarray | None = None
    excluded: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    member_scores: np.ndarray | None = None
    gradients: GradientSource | None = None
    counts: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.groups.shape[0])


@dataclass(frozen=True)
class ScoredPair:
    """One chosen comparison: item indices, informativeness and propensity."""

    i: int
    j: int
    score: float
    propensity: float | None = None


@dataclass(frozen=True)
class ScoredList:
    """One chosen list: item indices in the order the strategy picked them (not a
    ranking), how informative it looked, and the probability of the choice."""

    items: tuple[int, ...]
    score: float
    propensity: float | None = None


class Strategy(Protocol):
    """A query strategy: pairs for pairwise studies, lists of K for rankings.

    ``name`` is the strategy's key in the registry (and what a comparison records
    as the strategy that chose it). ``select_list`` builds one list of ``k``
    items from the item indices ``members`` of one group, or None when it cannot
    (see ``lists.select_lists``, which calls it once per group).
    """

    name: ClassVar[str]

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        """Return up to ``n`` new pairs, most informative first."""
        ...

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        """One list of ``k`` distinct items of ``members`` (a group), or None."""
        ...


def ordered(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def best_pairs(
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    excluded: frozenset[tuple[int, int]],
    n: int,
    max_per_item: int,
) -> list[ScoredPair]:
    """The ``n`` highest-scoring candidate pairs ``(left[k], right[k])``, skipping
    excluded and repeated pairs and any pair whose item already appears
    ``max_per_item`` times in the batch (so a batch spreads over items)."""
    chosen: list[ScoredPair] = []
    uses: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    for k in np.argsort(-score, kind="stable"):
        if len(chosen) >= n:
            break
        pair = ordered(int(left[k]), int(right[k]))
        if pair in excluded or pair in seen:
            continue
        if uses.get(pair[0], 0) >= max_per_item or uses.get(pair[1], 0) >= max_per_item:
            continue
        seen.add(pair)
        uses[pair[0]] = uses.get(pair[0], 0) + 1
        uses[pair[1]] = uses.get(pair[1], 0) + 1
        chosen.append(ScoredPair(i=pair[0], j=pair[1], score=float(score[k]), propensity=1.0))
    return chosen


def group_members(groups: np.ndarray) -> list[np.ndarray]:
    """Item indices of each group that has at least two items."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    cuts = np.flatnonzero(np.diff(sorted_groups)) + 1
    return [members for members in np.split(order, cuts) if members.size >= 2]


def diversify(
    picks: list[ScoredPair], features: np.ndarray | None, n: int, max_similarity: float = 0.98
) -> list[ScoredPair]:
    """The first ``n`` of ``picks`` (best first) after dropping near-duplicates, for
    batches many annotators answer at once: a pair of two near-identical responses
    (cosine similarity of their embeddings above ``max_similarity``) tells little,
    and a pair whose two items are near-duplicates of an already chosen pair's
    items asks the same question twice. ``features`` are the items' embeddings
    (unit-normalised rows); without them the picks are only truncated."""
    if features is None or not picks:
        return picks[:n]
    x = np.asarray(features, dtype=np.float32)
    chosen: list[ScoredPair] = []
    for pick in picks:
        if len(chosen) >= n:
            break
        a, b = x[pick.i], x[pick.j]
        if float(a @ b) > max_similarity:
            continue
        if chosen:
            ci = np.array([c.i for c in chosen])
            cj = np.array([c.j for c in chosen])
            same = ((x[ci] @ a > max_similarity) & (x[cj] @ b > max_similarity)) | (
                (x[ci] @ b > max_similarity) & (x[cj] @ a > max_similarity)
            )
            if same.any():
                continue
        chosen.append(pick)
    return chosen


def n_subsets(n: int, k: int) -> float:
    """How many sets of ``k`` items ``n`` items allow (the propensity of a uniform draw is its inverse)."""
    return float(comb(n, k))


def member_scores_of(inp: SelectionInput, strategy: str) -> np.ndarray:
    """``inp.member_scores`` as a float64 ``(M, N)`` array, checked: a strategy
    that reads an epistemic model's members (double TS, infomax, EUBO) refuses a
    model without them, or with fewer than two, in words that name it."""
    if inp.member_scores is None:
        raise ValueError(
            f"the {strategy} strategy needs a reward model with members (model type 'kernel' or 'ensemble')"
        )
    members = np.asarray(inp.member_scores, dtype=np.float64)
    if members.ndim != 2 or members.shape[1] != inp.n_items or members.shape[0] < 2:
        raise ValueError(f"member_scores must be (members >= 2, {inp.n_items}), got {members.shape}")
    return members


def optimistic_top(optimistic: np.ndarray, items: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` of ``items`` with the highest ``optimistic`` utility (mean + spread,
    one value per item), ties broken at random; all of them when there are no more
    than ``k``. The pairs among them are the ones that can change which item is best."""
    if items.size <= k:
        return items
    return items[np.argsort(-(optimistic + rng.random(items.size) * 1e-9))[:k]]
