"""The benchmark's statistics: paired ratios of medians with a bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.strategies.summary import paired_ratio, summarise


def test_paired_ratio_is_the_ratio_of_medians_with_an_interval_around_it() -> None:
    baseline = np.array([1.0, 0.8, 0.6, 0.9, 0.7])
    result = paired_ratio(baseline / 2, baseline, np.random.default_rng(0))
    assert result["ratio_to_random"] == pytest.approx(0.5)
    assert result["ratio_ci90"] == [pytest.approx(0.5), pytest.approx(0.5)]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the bootstrap's inf ratios
def test_a_zero_baseline_gives_one_when_both_are_zero_and_no_number_otherwise() -> None:
    zero = np.zeros(3)
    assert paired_ratio(zero, zero, np.random.default_rng(0))["ratio_to_random"] == 1.0
    assert paired_ratio(np.ones(3), zero, np.random.default_rng(0))["ratio_to_random"] is None


def test_summarise_pairs_runs_by_setting_and_seed() -> None:
    runs = [
        {"setting": k, "strategy": s, "seed": seed, "regret": [r], "tau": [0.5], "select_seconds_p50": 0.0,
         "fit_seconds_p50": 0.0}
        for k in ("a", "b")
        for seed in range(4)
        for s, r in (("random", 0.4 + 0.1 * seed), ("apohf", 0.1 + 0.05 * seed))
    ]  # fmt: skip
    summary, per_setting = summarise(runs, ["random", "apohf"])
    assert summary["apohf"]["paired_runs"] == 8 and summary["random"]["ratio_to_random"] == 1.0
    assert summary["apohf"]["ratio_to_random"] == pytest.approx(0.175 / 0.55, abs=1e-4)
    assert list(per_setting) == ["a", "b"] and per_setting["a"]["apohf"]["runs"] == 4
