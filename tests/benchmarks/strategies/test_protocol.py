"""The protocol: its strategy list comes from the registry, and every strategy of a
seed shares the problem and start pairs (the pairing behind the ratios)."""

from __future__ import annotations

import numpy as np

from activelearn.strategies import registry
from benchmarks.strategies.protocol import (
    ENSEMBLE,
    QUICK,
    STRATEGIES,
    Annotator,
    Setting,
    make_problem,
    model_outputs,
    start_pairs,
)


def test_the_strategy_list_is_the_registry_then_the_peers_in_a_fixed_order() -> None:
    """Each run's generator is keyed by the strategy's position, so the order is protocol."""
    assert (*registry.names(), "botorch_eubo", "choix_random") == STRATEGIES
    assert STRATEGIES[:6] == ("random", "least_compared", "uncertainty", "apohf", "double_ts", "infomax")
    assert ENSEMBLE == ("double_ts", "infomax")


def test_model_outputs_follow_what_the_registry_says_a_strategy_needs() -> None:
    assert model_outputs("random") == ()
    assert model_outputs("uncertainty") == ("scores",)
    assert model_outputs("apohf") == ("scores", "gradients")
    assert model_outputs("double_ts") == ("member_scores",)


def test_the_problem_and_start_pairs_are_shared_by_every_strategy_of_a_seed(tiny_pool: np.ndarray) -> None:
    """The hidden utility depends on the family and seed only, not on s or ε."""
    cfg = QUICK
    setting = Setting("linear", 10.0, 0.0)
    assert start_pairs(30, 5, 1, setting) == start_pairs(30, 5, 1, setting)
    assert len(set(start_pairs(30, 5, 1, setting))) == 5
    _, u1 = make_problem(tiny_pool, setting, 1, cfg)
    _, u2 = make_problem(tiny_pool, Setting("linear", 3.0, 0.1), 1, cfg)
    np.testing.assert_array_equal(u1, u2)
    _, other_seed = make_problem(tiny_pool, setting, 2, cfg)
    assert not np.array_equal(u1, other_seed)


def test_the_annotator_answers_a_pair_the_same_whoever_asks() -> None:
    """Common random numbers: the answer to (i, j) depends on the seed and setting only."""
    utility = np.linspace(-1.0, 1.0, 10)
    setting = Setting("mlp", 3.0, 0.1)
    first = Annotator(utility, setting, 4, QUICK)
    second = Annotator(utility, setting, 4, QUICK)
    answers = [first.answer(i, j) for i in range(10) for j in range(10) if i != j]
    assert answers == [second.answer(i, j) for i in range(10) for j in range(10) if i != j]
    assert 0.0 < np.mean(answers) < 1.0
