"""The fair protocol: its strategy list comes from the registry, problems are
independent per setting and seed, answers are common random numbers per unordered
pair, and the cadence is the app's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activelearn import services
from activelearn.services import retrain_due_after
from activelearn.strategies import registry
from benchmarks.strategies.protocol import (
    ALL_SETTINGS,
    CLASSIC,
    HELD_OUT_FIRST_SEED,
    NAMED_BEST,
    QUICK,
    RECOMMENDATION_SAMPLES,
    RETRAIN_GROWTH,
    RETRAIN_MIN_NEW,
    STRATEGIES,
    Annotator,
    Pool,
    Setting,
    make_problem,
    model_outputs,
    next_fit,
    start_pairs,
)


def test_the_strategy_list_is_the_registry_then_the_peers_in_a_fixed_order() -> None:
    """Each run's generator is keyed by the strategy's position, so the order is protocol."""
    assert (*registry.names(), "botorch_eubo", "choix_random") == STRATEGIES
    assert STRATEGIES[:6] == ("random", "least_compared", "uncertainty", "apohf", "double_ts", "infomax")
    assert NAMED_BEST in STRATEGIES


def test_the_grid_keeps_the_eight_classic_settings_and_adds_harder_ones() -> None:
    assert len(CLASSIC) == 8 and {s.pool for s in CLASSIC} == {"composed"}
    assert len({s.key for s in ALL_SETTINGS}) == len(ALL_SETTINGS)
    assert {s.family for s in ALL_SETTINGS} >= {"linear", "mlp", "smooth", "needle", "hh_reward"}
    assert {s.pool for s in ALL_SETTINGS} == {"composed", "hh"}


def test_model_outputs_follow_what_the_registry_says_a_strategy_needs() -> None:
    assert model_outputs("random") == ()
    assert model_outputs("uncertainty") == ("scores",)
    assert model_outputs("apohf") == ("scores", "gradients")
    assert model_outputs("double_ts") == ("member_scores",)


def test_the_cadence_is_the_apps(settings) -> None:
    """The benchmark refits when the app would with its default settings (every
    judgment trains in the benchmark)."""
    source = (Path(__file__).resolve().parents[3] / "webapp" / "settings.py").read_text()
    assert f'"PREFLOOP_RETRAIN_MIN_NEW", default={RETRAIN_MIN_NEW})' in source
    assert f'"PREFLOOP_RETRAIN_GROWTH", default={RETRAIN_GROWTH})' in source
    settings.PREFLOOP_RETRAIN_MIN_NEW, settings.PREFLOOP_RETRAIN_GROWTH = RETRAIN_MIN_NEW, RETRAIN_GROWTH
    for n in (0, 3, 5, 49, 50, 51, 60, 149, 1000):
        assert next_fit(n) == retrain_due_after(n)
    assert RECOMMENDATION_SAMPLES == services.RECOMMENDATION_SAMPLES


def test_problems_are_shared_by_strategies_and_independent_across_settings(tiny_pool: np.ndarray) -> None:
    """Two settings that differ only in s or ε get different candidates and utilities;
    the same setting and seed always gets the same problem and start pairs."""
    pool = Pool(tiny_pool)
    setting = Setting("composed", "linear", 10.0, 0.0)
    assert start_pairs(30, 5, 1, setting) == start_pairs(30, 5, 1, setting)
    assert len(set(start_pairs(30, 5, 1, setting))) == 5
    x1, u1 = make_problem(pool, setting, 1, QUICK)
    x1_again, u1_again = make_problem(pool, setting, 1, QUICK)
    np.testing.assert_array_equal(u1, u1_again)
    np.testing.assert_array_equal(x1, x1_again)
    x2, u2 = make_problem(pool, Setting("composed", "linear", 3.0, 0.1), 1, QUICK)
    assert not np.array_equal(x1, x2) and not np.array_equal(u1, u2)
    _, other_seed = make_problem(pool, setting, 2, QUICK)
    assert not np.array_equal(u1, other_seed)


def test_the_real_preference_family_reads_the_pools_utility(tiny_pool: np.ndarray) -> None:
    real = np.arange(tiny_pool.shape[0], dtype=np.float64)
    _, u = make_problem(Pool(tiny_pool, real), Setting("hh", "hh_reward", 10.0, 0.1), 0, QUICK)
    assert np.all(np.diff(u) > 0) and abs(u.mean()) < 1e-9 and u.std() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no real-preference utility"):
        make_problem(Pool(tiny_pool), Setting("hh", "hh_reward", 10.0, 0.1), 0, QUICK)


def test_the_annotator_answers_an_unordered_pair_the_same_whoever_asks_in_any_order() -> None:
    """Common random numbers: the answer to {i, j} depends on the seed and setting only,
    and swapping the shown order gives the mirrored answer."""
    utility = np.linspace(-1.0, 1.0, 10)
    setting = Setting("composed", "mlp", 3.0, 0.1)
    first = Annotator(utility, setting, 4, QUICK)
    second = Annotator(utility, setting, 4, QUICK)
    pairs = [(i, j) for i in range(10) for j in range(10) if i != j]
    answers = [first.answer(i, j) for i, j in pairs]
    assert answers == [second.answer(i, j) for i, j in pairs]
    assert all(first.answer(i, j) == 1.0 - first.answer(j, i) for i, j in pairs)
    assert 0.0 < np.mean(answers) < 1.0


def test_the_annotators_answers_follow_the_flipped_bradley_terry_probability() -> None:
    """Over many seeds, the share of answers for the better item matches
    ε + (1 − 2ε)·σ(s·Δu) (the coupling keeps the distribution)."""
    utility = np.array([0.0, 0.2])
    setting = Setting("composed", "linear", 3.0, 0.1)
    wins = [Annotator(utility, setting, seed, QUICK).answer(1, 0) for seed in range(4000)]
    p = 0.1 + 0.8 / (1.0 + np.exp(-3.0 * 0.2))
    assert np.mean(wins) == pytest.approx(p, abs=0.025)


def test_held_out_seeds_start_above_the_development_ones() -> None:
    assert HELD_OUT_FIRST_SEED >= 100
