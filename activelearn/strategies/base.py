"""The strategy interface, its value types and the factory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


class StrategyName(StrEnum):
    RANDOM = "random"
    LEAST_COMPARED = "least_compared"
    UNCERTAINTY = "uncertainty"
    APOHF = "apohf"
    DOUBLE_TS = "double_ts"
    INFOMAX = "infomax"


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


class Strategy(Protocol):
    name: StrategyName

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        """Return up to ``n`` new pairs, most informative first."""
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


def get_strategy(name: str | StrategyName, **params: object) -> Strategy:
    """Build the strategy called ``name`` with its parameters.

    Unknown names raise ValueError listing the known ones, and unknown or
    invalid parameters raise ValueError naming them, so a typo in a study's
    configuration fails loudly instead of silently falling back.
    """
    import dataclasses

    from activelearn.strategies.apohf import ApohfStrategy
    from activelearn.strategies.ensemble_based import DoubleThompsonStrategy, InfomaxStrategy
    from activelearn.strategies.least_compared import LeastComparedStrategy
    from activelearn.strategies.random_pairs import RandomStrategy
    from activelearn.strategies.uncertainty import UncertaintyStrategy

    try:
        key = StrategyName(name)
    except ValueError:
        known = ", ".join(s.value for s in StrategyName)
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}") from None
    factories: dict[StrategyName, type] = {
        StrategyName.RANDOM: RandomStrategy,
        StrategyName.LEAST_COMPARED: LeastComparedStrategy,
        StrategyName.UNCERTAINTY: UncertaintyStrategy,
        StrategyName.APOHF: ApohfStrategy,
        StrategyName.DOUBLE_TS: DoubleThompsonStrategy,
        StrategyName.INFOMAX: InfomaxStrategy,
    }
    factory = factories[key]
    allowed = {f.name for f in dataclasses.fields(factory) if f.name != "name"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for strategy {key.value}; "
            f"known: {', '.join(sorted(allowed)) or 'none'}"
        )
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid parameters for strategy {key.value}: {exc}") from None


# What each strategy needs from the current model; the loop checks this before
# selecting and falls back to random pairs when it is missing.
MODEL_NEEDS: dict[StrategyName, str | None] = {
    StrategyName.RANDOM: None,
    StrategyName.LEAST_COMPARED: None,
    StrategyName.UNCERTAINTY: "scores",
    StrategyName.APOHF: "gradients",
    StrategyName.DOUBLE_TS: "member_scores",
    StrategyName.INFOMAX: "member_scores",
}


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
