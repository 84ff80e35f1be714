"""A strategy that exists only in tests, registered nowhere but the registry.

It proves the registry is the one place a strategy is named: registered, it is
offered to studies, served by the loop and checked by the contract tests
(``test_contract.py``). Loaded as a pytest plugin (``-p
tests.activelearn.strategies.toy_strategy``) it registers itself before the
contract tests are collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from activelearn.strategies import ScoredList, ScoredPair, SelectionInput, StrategySpec
from activelearn.strategies.base import group_members, ordered
from activelearn.strategies.registry import register


@dataclass
class FirstOpenPairs:
    """Each prompt's open pairs in item order, prompt after prompt; lists are a
    prompt's first K items. Deterministic, needs nothing from the model."""

    name: ClassVar[str] = "first_open_pairs"

    def select(self, inp: SelectionInput, n: int, rng: np.random.Generator) -> list[ScoredPair]:
        chosen: list[ScoredPair] = []
        for members in group_members(inp.groups):
            for a, i in enumerate(members):
                for j in members[a + 1 :]:
                    pair = ordered(int(i), int(j))
                    if len(chosen) < n and pair not in inp.excluded:
                        chosen.append(ScoredPair(i=pair[0], j=pair[1], score=1.0, propensity=1.0))
        return chosen

    def select_list(
        self, inp: SelectionInput, members: np.ndarray, k: int, rng: np.random.Generator
    ) -> ScoredList | None:
        return ScoredList(tuple(int(i) for i in np.sort(members)[:k]), 1.0, 1.0)


SPEC = StrategySpec(FirstOpenPairs, "First open pairs (tests only)")


def pytest_configure(config: object) -> None:
    """As a pytest plugin: register the toy strategy before tests are collected."""
    register(SPEC)
