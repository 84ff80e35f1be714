"""One benchmark run is a pure function of (setting, strategy, seed, config)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.strategies.protocol import QUICK, Setting
from benchmarks.strategies.runner import drives_selection, run_one


def test_runs_are_deterministic_per_seed(tiny_pool: np.ndarray) -> None:
    """The same seed gives the same curve."""
    cfg = dataclasses.replace(QUICK, n_items=30, steps=9, eval_every=2)
    setting = Setting("linear", 10.0, 0.0)
    first = run_one(setting, "least_compared", 1, cfg, tiny_pool)
    again = run_one(setting, "least_compared", 1, cfg, tiny_pool)
    assert first["regret"] == again["regret"] and first["tau"] == again["tau"]
    assert first["t"] == [5, 7, 9]


def test_strategies_that_read_no_model_fit_only_on_the_grid(tiny_pool: np.ndarray) -> None:
    """random fits its recommendation model at the grid points only; uncertainty, whose
    choice reads the scores, refits after every judgment."""
    cfg = dataclasses.replace(QUICK, n_items=30, steps=9, eval_every=2)
    setting = Setting("linear", 10.0, 0.0)
    assert run_one(setting, "random", 0, cfg, tiny_pool)["fits"] == 3
    assert run_one(setting, "uncertainty", 0, cfg, tiny_pool)["fits"] == 5


@pytest.mark.parametrize(
    ("strategy", "drives"),
    [("random", False), ("least_compared", False), ("choix_random", False), ("apohf", True),
     ("infomax", True), ("botorch_eubo", True)],
)  # fmt: skip
def test_only_model_reading_strategies_drive_refits(strategy: str, drives: bool) -> None:
    assert drives_selection(strategy) is drives
