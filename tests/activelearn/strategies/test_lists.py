"""Listwise variants of every strategy."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.strategies import SelectionInput, get_strategy
from activelearn.strategies.lists import select_lists
from tests.activelearn.strategies.inputs import GROUPS, full_input


def test_least_compared_lists_take_the_least_judged_items() -> None:
    counts = np.array([5, 0, 3, 1, 0, 2, 9, 0])
    inp = SelectionInput(groups=np.zeros(8, dtype=np.int64), counts=counts)
    (chosen,) = select_lists(get_strategy("least_compared"), inp, 1, 3, np.random.default_rng(0))
    assert set(chosen.items) == {1, 4, 7}


def test_uncertainty_lists_are_the_closest_utilities() -> None:
    scores = np.array([0.0, 5.0, 5.1, 9.0, 5.2, -3.0])
    inp = SelectionInput(groups=np.zeros(6, dtype=np.int64), scores=scores)
    (chosen,) = select_lists(get_strategy("uncertainty"), inp, 1, 3, np.random.default_rng(0))
    assert set(chosen.items) == {1, 2, 4}


def test_double_ts_list_starts_with_a_posterior_leader() -> None:
    members = np.tile(np.arange(6, dtype=float)[::-1], (5, 1))  # all members: 0 > 1 > ... > 5
    inp = SelectionInput(groups=np.zeros(6, dtype=np.int64), member_scores=members)
    (chosen,) = select_lists(get_strategy("double_ts"), inp, 1, 3, np.random.default_rng(0))
    assert chosen.items == (0, 1, 2)
    assert chosen.propensity == pytest.approx(1.0)


def test_infomax_list_gathers_the_disputed_items() -> None:
    members = np.zeros((6, 6))
    members[:3, 0] = members[3:, 1] = 3.0  # members split on 0 vs 1
    members[:2, 2] = members[2:4, 0] = 1.0
    members[:, 3:] = [[-5.0, -6.0, -7.0]]  # settled: clearly worse
    inp = SelectionInput(groups=np.zeros(6, dtype=np.int64), member_scores=members)
    (chosen,) = select_lists(get_strategy("infomax"), inp, 1, 3, np.random.default_rng(0))
    assert set(chosen.items) == {0, 1, 2}


def test_apohf_list_is_the_leader_and_its_challengers() -> None:
    inp = full_input(3)
    (chosen,) = select_lists(get_strategy("apohf"), inp, 1, 4, np.random.default_rng(0))
    group = GROUPS[chosen.items[0]] == GROUPS
    assert chosen.items[0] == int(np.flatnonzero(group)[np.argmax(inp.scores[group])])


def test_excluded_lists_and_bad_sizes() -> None:
    inp = SelectionInput(groups=np.zeros(3, dtype=np.int64), scores=np.array([0.0, 1.0, 2.0]))
    taken = SelectionInput(groups=inp.groups, scores=inp.scores, excluded=frozenset({(0, 1, 2)}))
    assert select_lists(get_strategy("uncertainty"), taken, 1, 3, np.random.default_rng(0)) == []
    assert select_lists(get_strategy("uncertainty"), inp, 1, 4, np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match="two items"):
        select_lists(get_strategy("random"), inp, 1, 1, np.random.default_rng(0))
