"""The benchmark's statistics: paired ratios and differences with bootstrap intervals,
and wins by setting."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.strategies.summary import paired_difference, paired_ratio, summarise, targets


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


def test_the_paired_difference_interval_is_over_pairs() -> None:
    """A constant shift has a point interval however spread the values are; the sign
    says which side has the lower regret."""
    rng = np.random.default_rng(1)
    other = rng.random(50)
    diff = paired_difference(other - 0.1, other, np.random.default_rng(0))
    assert diff["mean"] == pytest.approx(-0.1) and diff["median"] == pytest.approx(-0.1)
    assert diff["ci90"] == [pytest.approx(-0.1), pytest.approx(-0.1)] and diff["n"] == 50
    noisy = paired_difference(rng.random(50), rng.random(50), np.random.default_rng(0))
    assert noisy["ci90"][0] < noisy["mean"] < noisy["ci90"][1]


def _runs(regrets: dict[str, dict[str, list[float]]]) -> list[dict]:
    return [
        {"setting": k, "strategy": s, "seed": seed, "regret": [r], "tau": [0.5], "select_seconds_p50": 0.0,
         "fit_seconds_p50": 0.0}
        for s, by_setting in regrets.items()
        for k, values in by_setting.items()
        for seed, r in enumerate(values)
    ]  # fmt: skip


def test_summarise_pairs_runs_by_problem_and_counts_wins_by_setting() -> None:
    a, b = "composed.linear_s10_eps0", "composed.mlp_s10_eps0"
    runs = _runs(
        {
            "random": {a: [0.4, 0.5, 0.6, 0.7], b: [0.4, 0.5, 0.6, 0.7]},
            "apohf": {a: [0.1, 0.15, 0.2, 0.25], b: [0.5, 0.6, 0.7, 0.8]},
            "botorch_eubo": {a: [0.2, 0.2, 0.2, 0.2], b: [0.2, 0.2, 0.2, 0.2]},
        }
    )
    out = summarise(runs, ["random", "apohf", "botorch_eubo"])
    apohf = out["summary"]["apohf"]
    assert apohf["paired_runs"] == 8 and out["summary"]["random"]["ratio_to_random"] == 1.0
    assert apohf["mean_regret_at_T"] == pytest.approx(0.4125)
    assert apohf["paired_diff_vs_botorch_eubo"]["mean"] == pytest.approx(0.2125)
    assert list(out["settings"]) == [a, b] and out["settings"][a]["apohf"]["runs"] == 4
    assert set(out["pools"]) == {"composed"} and set(out["families"]) == {"linear", "mlp"}
    vs_random = out["wins"]["apohf"]["random"]
    assert apohf["wins"] == out["wins"]["apohf"]
    assert (vs_random["wins"], vs_random["losses"], vs_random["ties"]) == (1, 1, 0)
    assert vs_random["sure_wins"] == [a] and vs_random["sure_losses"] == [b]
    met = targets(out, None)
    assert not met["no prefloop strategy surely worse than random in any setting"]["met"]
