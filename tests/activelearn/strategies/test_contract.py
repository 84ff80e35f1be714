"""What every registered strategy promises, checked for each entry of the registry.

The parametrisation comes from the registry, so a strategy added there is checked
here without editing this file (``test_registry.py`` proves it with a strategy that
exists only in tests).
"""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.strategies import SelectionInput, get_strategy
from activelearn.strategies.lists import select_lists
from activelearn.strategies.registry import get_spec, names
from tests.activelearn.strategies.inputs import GROUPS, full_input

EXCLUDED = frozenset({(0, 1), (8, 9), (16, 17)})


@pytest.fixture(params=names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_pairs_are_new_distinct_ordered_and_within_one_prompt(name: str) -> None:
    picks = get_strategy(name).select(full_input(excluded=EXCLUDED), 6, np.random.default_rng(0))
    pairs = [(p.i, p.j) for p in picks]
    assert 0 < len(pairs) <= 6
    assert len(set(pairs)) == len(pairs), "a batch never repeats a pair"
    assert all(i < j for i, j in pairs), "pairs are stored as (lower, higher) item index"
    assert all(GROUPS[i] == GROUPS[j] for i, j in pairs), "only responses to one prompt are compared"
    assert not set(pairs) & EXCLUDED, "queued or judged pairs are never chosen again"


def test_scores_and_propensities_are_finite_numbers(name: str) -> None:
    picks = get_strategy(name).select(full_input(), 6, np.random.default_rng(0))
    assert all(np.isfinite(p.score) for p in picks)
    assert all(p.propensity is None or 0.0 < p.propensity <= 1.0 for p in picks)


def test_the_same_generator_gives_the_same_choice(name: str) -> None:
    first = get_strategy(name).select(full_input(), 5, np.random.default_rng(7))
    again = get_strategy(name).select(full_input(), 5, np.random.default_rng(7))
    assert first == again


def test_a_batch_of_one_is_one_pair_and_none_is_none(name: str) -> None:
    strategy = get_strategy(name)
    assert len(strategy.select(full_input(), 1, np.random.default_rng(0))) == 1
    assert strategy.select(full_input(), 0, np.random.default_rng(0)) == []


def test_without_what_it_needs_from_the_model_it_refuses(name: str) -> None:
    needs = get_spec(name).needs
    bare = SelectionInput(groups=GROUPS)
    if needs is None:
        assert get_strategy(name).select(bare, 3, np.random.default_rng(0)), "it works before the first model"
    else:
        with pytest.raises(ValueError, match="needs"):
            get_strategy(name).select(bare, 3, np.random.default_rng(0))


def test_lists_are_distinct_items_of_one_prompt_one_list_per_prompt(name: str) -> None:
    lists = select_lists(get_strategy(name), full_input(), 3, 4, np.random.default_rng(1))
    assert len(lists) == 3
    for chosen in lists:
        assert len(chosen.items) == 4 == len(set(chosen.items))
        assert len({int(GROUPS[i]) for i in chosen.items}) == 1
    assert len({int(GROUPS[c.items[0]]) for c in lists}) == 3, "a batch spreads over prompts"
