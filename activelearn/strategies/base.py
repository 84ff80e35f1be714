"""The strategy interface, its value types and the factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


class StrategyName(StrEnum):
    RANDOM = "random"
    UNCERTAINTY = "uncertainty"


@dataclass(frozen=True)
class SelectionInput:
    """What a strategy sees: items, their groups and the current model's view.

    ``groups[i]`` is the group of item ``i`` (its prompt); only items of one
    group are ever compared. ``scores`` are the reward model's utilities, or
    None before the first model exists. ``excluded`` holds pairs ``(i, j)``
    with ``i < j`` that are already queued or judged.
    """

    groups: np.ndarray
    scores: np.ndarray | None = None
    excluded: frozenset[tuple[int, int]] = field(default_factory=frozenset)

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


def group_members(groups: np.ndarray) -> list[np.ndarray]:
    """Item indices of each group that has at least two items."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    cuts = np.flatnonzero(np.diff(sorted_groups)) + 1
    return [members for members in np.split(order, cuts) if members.size >= 2]


def get_strategy(name: str | StrategyName, **params: object) -> Strategy:
    """Build the strategy called ``name`` with its parameters.

    Unknown names raise ValueError listing the known ones, so a typo in a
    study's configuration fails loudly instead of silently falling back.
    """
    from activelearn.strategies.random_pairs import RandomStrategy
    from activelearn.strategies.uncertainty import UncertaintyStrategy

    try:
        key = StrategyName(name)
    except ValueError:
        known = ", ".join(s.value for s in StrategyName)
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}") from None
    factories = {StrategyName.RANDOM: RandomStrategy, StrategyName.UNCERTAINTY: UncertaintyStrategy}
    return factories[key](**params)
