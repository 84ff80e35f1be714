"""One benchmark run is a pure function of (setting, strategy, seed, config) and follows
the app's cadence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.strategies.protocol import QUICK, Pool, Setting, next_fit
from benchmarks.strategies.runner import run_one


def test_runs_are_deterministic_per_seed(tiny_pool: np.ndarray) -> None:
    """The same seed gives the same curve."""
    cfg = dataclasses.replace(QUICK, n_items=30, steps=9, eval_every=2)
    setting = Setting("composed", "linear", 10.0, 0.0)
    first = run_one(setting, "least_compared", 1, cfg, Pool(tiny_pool))
    again = run_one(setting, "least_compared", 1, cfg, Pool(tiny_pool))
    assert first["regret"] == again["regret"] and first["tau"] == again["tau"]
    assert first["t"] == [5, 7, 9]


def test_models_are_fitted_on_the_apps_cadence_and_at_t(tiny_pool: np.ndarray) -> None:
    """Fits at the start pairs, then where the app would retrain, then at T."""
    cfg = dataclasses.replace(QUICK, n_items=40, steps=33, eval_every=5)
    run = run_one(Setting("composed", "linear", 10.0, 0.0), "uncertainty", 0, cfg, Pool(tiny_pool))
    expected = [5]
    while expected[-1] < 33:
        expected.append(min(next_fit(expected[-1]), 33))
    assert run["fit_at"] == expected
    assert run["t"] == [5, 10, 15, 20, 25, 30, 33]


@pytest.mark.parametrize("strategy", ["double_ts", "apohf", "botorch_eubo", "choix_random"])
def test_every_pair_is_asked_once_and_batches_are_filled(tiny_pool: np.ndarray, strategy: str) -> None:
    """A strategy that runs out of pairs it likes is topped up with random ones, so T
    judgments are always reached (12 items have 66 pairs; T = 40)."""
    if strategy == "botorch_eubo":
        pytest.importorskip("botorch", reason="the EUBO peer needs requirements-bench.txt")
    cfg = dataclasses.replace(QUICK, n_items=12, steps=40, eval_every=5)
    run = run_one(Setting("composed", "mlp", 3.0, 0.1), strategy, 0, cfg, Pool(tiny_pool))
    assert run["t"][-1] == 40 and len(run["regret"]) == len(run["t"])


def test_prefloop_strategies_are_scored_on_the_apps_recommendation_and_peers_on_their_own(
    tiny_pool: np.ndarray,
) -> None:
    """The headline regret of a prefloop strategy is what the study page would
    recommend; a peer's is its own model's best; both are kept for every run."""
    cfg = dataclasses.replace(QUICK, n_items=30, steps=12, eval_every=2)
    setting = Setting("composed", "linear", 10.0, 0.0)
    ours = run_one(setting, "uncertainty", 0, cfg, Pool(tiny_pool))
    peer = run_one(setting, "choix_random", 0, cfg, Pool(tiny_pool))
    assert ours["regret"] == ours["regret_app"] and peer["regret"] == peer["regret_model"]
    assert len(ours["regret_model"]) == len(ours["t"]) == len(peer["regret_app"])
